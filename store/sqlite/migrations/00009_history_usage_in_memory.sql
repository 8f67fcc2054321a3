-- +goose Up
-- What each user's history holds is counted by the writer, in memory, from
-- the history's rows where it does not know it: a change no longer writes
-- a tally row beside its record.
DROP TABLE history_usage;

-- +goose Down
CREATE TABLE history_usage (
    user_id TEXT    NOT NULL PRIMARY KEY,
    records INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO history_usage (user_id, records, bytes)
    SELECT user_id, count(*), sum(size) FROM attribute_history GROUP BY user_id;
