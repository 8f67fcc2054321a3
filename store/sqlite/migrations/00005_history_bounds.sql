-- +goose Up
-- What each user's history holds, kept in the transaction of every change
-- that adds a record, so that the oldest records can go as a change takes
-- the user past the history's bounds without counting the user's records.
ALTER TABLE attribute_history ADD COLUMN size INTEGER NOT NULL DEFAULT 0; -- bytes of the text columns
UPDATE attribute_history SET size = length(CAST(id AS BLOB)) + length(CAST(user_id AS BLOB))
    + length(CAST(actor_type AS BLOB)) + length(CAST(actor_id AS BLOB)) + length(CAST(client_id AS BLOB))
    + length(CAST(request_id AS BLOB)) + length(CAST(set_values AS BLOB)) + length(CAST(removed_keys AS BLOB))
    + length(CAST(changed_keys AS BLOB));
CREATE TABLE history_usage (
    user_id TEXT    NOT NULL PRIMARY KEY,
    records INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO history_usage (user_id, records, bytes)
    SELECT user_id, count(*), sum(size) FROM attribute_history GROUP BY user_id;

-- +goose Down
DROP TABLE history_usage;
ALTER TABLE attribute_history DROP COLUMN size;
