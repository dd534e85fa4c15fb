-- Idempotency keys record what a command produced (its outcome), not a rendered HTTP response,
-- and belong to a caller: two callers may use the same key.
ALTER TABLE idempotency_keys ADD COLUMN caller text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN outcome jsonb;
-- Every key stored so far came from a product creation answered 201 {id, version}. Their
-- fingerprints were taken over the HTTP body and are kept: a replay of such a key within its
-- remaining lifetime is refused with 422 (never applied twice), a new key works as usual.
UPDATE idempotency_keys
   SET outcome = jsonb_build_object(
           'command', 'create_product',
           'aggregate_id', response_body ->> 'id',
           'version', (response_body ->> 'version')::bigint,
           'created', true);
ALTER TABLE idempotency_keys ALTER COLUMN outcome SET NOT NULL;
ALTER TABLE idempotency_keys
    DROP COLUMN response_status,
    DROP COLUMN response_body,
    DROP COLUMN response_headers,
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (caller, key);
