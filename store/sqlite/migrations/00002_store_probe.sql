-- +goose Up
-- One row the store rewrites to find out whether writes work again after
-- one failed (a full disk): a readiness probe, never personal data.
CREATE TABLE store_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL -- Unix milliseconds
);

-- +goose Down
DROP TABLE store_probe;
