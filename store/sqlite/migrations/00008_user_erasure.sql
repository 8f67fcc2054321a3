-- +goose Up
-- The record of each erasure of a user: when, by whom, through which
-- client and request. It keeps no value: the user's data is what it
-- records the end of.
CREATE TABLE user_erasure (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL, -- Unix milliseconds
    actor_type TEXT    NOT NULL,
    actor_id   TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    request_id TEXT    NOT NULL
);
CREATE INDEX user_erasure_user ON user_erasure (user_id, seq);

-- +goose Down
DROP TABLE user_erasure;
