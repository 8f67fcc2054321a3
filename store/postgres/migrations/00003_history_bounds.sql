-- +goose Up
-- What each user's history holds, on the user's row: a merge holds that
-- row's lock, and keeps the counts in its transaction, so that the oldest
-- records can go as a change takes the user past the history's bounds
-- without counting the user's records.
ALTER TABLE attribute_history ADD COLUMN size INTEGER NOT NULL DEFAULT 0; -- bytes of the text columns
UPDATE attribute_history SET size = octet_length(id) + octet_length(user_id) + octet_length(actor_type)
    + octet_length(actor_id) + octet_length(client_id) + octet_length(request_id) + octet_length(set_values)
    + octet_length(removed_keys) + octet_length(array_to_json(changed_keys)::text);
ALTER TABLE user_attributes
    ADD COLUMN history_records INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN history_bytes   BIGINT  NOT NULL DEFAULT 0;
UPDATE user_attributes AS u SET history_records = h.records, history_bytes = h.bytes
    FROM (SELECT user_id, count(*) AS records, sum(size) AS bytes FROM attribute_history GROUP BY user_id) AS h
    WHERE u.user_id = h.user_id;

-- +goose Down
ALTER TABLE user_attributes DROP COLUMN history_records, DROP COLUMN history_bytes;
ALTER TABLE attribute_history DROP COLUMN size;
