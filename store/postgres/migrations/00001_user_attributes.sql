-- +goose Up
-- One row per user that has written attributes: the whole set is read and
-- written as one value, so a merge locks and writes one row. The column is
-- JSON text rather than jsonb so that any valid string, NUL included, is
-- kept as sent, and so that Postgres-compatible databases without jsonb can
-- hold it too.
CREATE TABLE user_attributes (
    user_id    TEXT        NOT NULL PRIMARY KEY,
    attributes TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE user_attributes;
