-- Outbox shards: several relays share the publishing, one product's rows stay in one shard.
--
-- A row's shard is a stable hash of its message key (the product id, for a review's events
-- too) over outbox_shards() shards. Each shard has one publisher at a time (an advisory lock
-- per shard, see catalog_contracts.relay), so a product's rows are published by one relay at a
-- time, in id order. The column is generated: every writer, this release's or an earlier one's,
-- gets it right, and the rows already there get theirs now.
--
-- The count is part of the schema: changing it is a migration (redefine both functions while
-- no relay runs, or while the outbox is drained, since a row's shard changes with it).
CREATE FUNCTION outbox_shards() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 16;

CREATE FUNCTION outbox_shard(message_key uuid) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (abs(hashtextextended(message_key::text, 0) % outbox_shards()))::smallint;

ALTER TABLE outbox
    ADD COLUMN shard smallint NOT NULL
        GENERATED ALWAYS AS (outbox_shard(coalesce(message_key, aggregate_id))) STORED;
