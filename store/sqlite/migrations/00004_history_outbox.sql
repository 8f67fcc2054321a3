-- +goose Up
-- A record of every change, written in the transaction of the change: who
-- made it, through which client and request, what it set and removed.
-- seq orders a user's changes as they were committed (one writer).
CREATE TABLE attribute_history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL, -- Unix milliseconds
    actor_type   TEXT    NOT NULL,
    actor_id     TEXT    NOT NULL,
    client_id    TEXT    NOT NULL,
    request_id   TEXT    NOT NULL,
    set_values   TEXT    NOT NULL, -- JSON object of arrays of strings
    removed_keys TEXT    NOT NULL, -- JSON array of strings
    changed_keys TEXT    NOT NULL  -- JSON array: set and removed, for the key filter
);
CREATE INDEX attribute_history_user ON attribute_history (user_id, seq);
-- No index on at_ms: one writer stamps the records in seq order, so
-- pruning takes the oldest by seq, and every merge saves an index write.

-- The change events not yet delivered, written in the transaction of the
-- change when events are on; a dispatcher delivers them in seq order and
-- deletes them.
CREATE TABLE event_outbox (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    part   INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL,
    record TEXT    NOT NULL -- the record as JSON, the event's data
);

-- +goose Down
DROP TABLE event_outbox;
DROP TABLE attribute_history;
