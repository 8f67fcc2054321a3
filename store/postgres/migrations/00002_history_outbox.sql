-- +goose Up
-- A record of every change, written in the transaction of the change: who
-- made it, through which client and request, what it set and removed. A
-- merge inserts its record after it holds its user's row lock, so seq
-- orders each user's changes as they were committed. Text, not jsonb, for
-- the reason user_attributes gives.
CREATE TABLE attribute_history (
    seq          BIGSERIAL   PRIMARY KEY,
    id           TEXT        NOT NULL,
    user_id      TEXT        NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    actor_type   TEXT        NOT NULL,
    actor_id     TEXT        NOT NULL,
    client_id    TEXT        NOT NULL,
    request_id   TEXT        NOT NULL,
    set_values   TEXT        NOT NULL, -- JSON object of arrays of strings
    removed_keys TEXT        NOT NULL, -- JSON array of strings
    changed_keys TEXT[]      NOT NULL  -- set and removed, for the key filter
);
CREATE INDEX attribute_history_user ON attribute_history (user_id, seq);
CREATE INDEX attribute_history_at ON attribute_history (at);

-- The change events not yet delivered, written in the transaction of the
-- change when events are on. Each user's events go to one part; a
-- dispatcher holds a part's row lock while it delivers that part's events
-- in seq order, so instances share the outbox and keep each user's order.
CREATE TABLE event_outbox (
    seq    BIGSERIAL   PRIMARY KEY,
    part   SMALLINT    NOT NULL,
    at     TIMESTAMPTZ NOT NULL,
    record TEXT        NOT NULL -- the record as JSON, the event's data
);
CREATE INDEX event_outbox_by_part ON event_outbox (part, seq);
CREATE TABLE event_outbox_part (part SMALLINT PRIMARY KEY);
INSERT INTO event_outbox_part SELECT generate_series(0, 15);

-- +goose Down
DROP TABLE event_outbox_part;
DROP TABLE event_outbox;
DROP TABLE attribute_history;
