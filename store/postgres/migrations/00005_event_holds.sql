-- +goose Up
-- Each event names its user, so that a claim passes over the events of
-- users whose delivery is held. Rows an older instance writes during an
-- upgrade name none, and are never held.
ALTER TABLE event_outbox ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
UPDATE event_outbox SET user_id = record::json->>'user';

-- A user whose delivery failed, or whose send went on past its batch: no
-- dispatcher, on any instance, takes the user's events before until.
-- attempts and since are the failures of the user's oldest event (0 while
-- a send goes on without one before it).
CREATE TABLE event_hold (
    user_id  TEXT        PRIMARY KEY,
    until    TIMESTAMPTZ NOT NULL,
    attempts INTEGER     NOT NULL,
    since    TIMESTAMPTZ
);

-- Events that failed too long, out of the outbox until an administrator
-- sends them again; event_seq is the seq they take again then.
CREATE TABLE event_parked (
    seq       BIGSERIAL   PRIMARY KEY,
    event_seq BIGINT      NOT NULL,
    id        TEXT        NOT NULL UNIQUE,
    user_id   TEXT        NOT NULL,
    part      SMALLINT    NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    parked_at TIMESTAMPTZ NOT NULL,
    attempts  INTEGER     NOT NULL,
    reason    TEXT        NOT NULL,
    record    TEXT        NOT NULL
);

-- +goose Down
DROP TABLE event_parked;
DROP TABLE event_hold;
ALTER TABLE event_outbox DROP COLUMN user_id;
