-- +goose Up
-- One row per attribute instead of one per user: a merge writes the rows of
-- the attributes it changes, so its cost does not grow with what the user
-- holds. Values are a JSON array of strings.
CREATE TABLE user_attribute (
    user_id    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    "values"   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL, -- Unix milliseconds
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
INSERT INTO user_attribute (user_id, name, "values", updated_at)
    SELECT u.user_id, a.key, a.value, u.updated_at
    -- The column was written as a BLOB of JSON text: read as text, it is
    -- JSON text to every version of SQLite's JSON functions.
    FROM user_attributes AS u, json_each(CAST(u.attributes AS TEXT)) AS a;
DROP TABLE user_attributes;

-- +goose Down
CREATE TABLE user_attributes (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    attributes TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO user_attributes (user_id, attributes, updated_at)
    SELECT user_id, json_group_object(name, json("values")), max(updated_at) FROM user_attribute GROUP BY user_id;
DROP TABLE user_attribute;
