-- +goose Up
-- One row per user that has attributes: the whole set is read and written
-- as one value, so a merge is one row read and one row write.
CREATE TABLE user_attributes (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    -- JSON object: attribute name -> array of values
    attributes TEXT    NOT NULL,
    updated_at INTEGER NOT NULL -- Unix milliseconds
) WITHOUT ROWID;

-- +goose Down
DROP TABLE user_attributes;
