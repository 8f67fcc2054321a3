-- +goose Up
-- The key that seals the history's cursors, made once at random and shared
-- by every instance, so that a cursor one instance gives out opens on
-- another, and tells nothing of how many changes the store has recorded.
CREATE TABLE store_key (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    cursor_key BYTEA    NOT NULL
);
INSERT INTO store_key (id, cursor_key)
    VALUES (1, decode(md5(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text), 'hex'));

-- +goose Down
DROP TABLE store_key;
