-- +goose Up
-- Each event names its user, so that a claim passes over the events of
-- users whose delivery is held.
ALTER TABLE event_outbox ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
UPDATE event_outbox SET user_id = json_extract(record, '$.user');

-- A user whose delivery failed, or whose send went on past its batch:
-- no claim takes the user's events before until_ms. attempts and since_ms
-- are the failures of the user's oldest event (0 while a send goes on
-- without one before it).
CREATE TABLE event_hold (
    user_id  TEXT    PRIMARY KEY,
    until_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    since_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Events that failed too long, out of the outbox until an administrator
-- sends them again; event_seq is the seq they take again then.
CREATE TABLE event_parked (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL,
    id        TEXT    NOT NULL UNIQUE,
    user_id   TEXT    NOT NULL,
    part      INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    parked_ms INTEGER NOT NULL,
    attempts  INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    record    TEXT    NOT NULL
);

-- +goose Down
DROP TABLE event_parked;
DROP TABLE event_hold;
ALTER TABLE event_outbox DROP COLUMN user_id;
