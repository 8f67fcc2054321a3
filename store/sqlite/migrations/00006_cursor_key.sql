-- +goose Up
-- The key that seals the history's cursors, made once at random, so that a
-- cursor tells nothing of how many changes the store has recorded.
CREATE TABLE store_key (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    cursor_key BLOB    NOT NULL
);
INSERT INTO store_key (id, cursor_key) VALUES (1, randomblob(16));

-- +goose Down
DROP TABLE store_key;
