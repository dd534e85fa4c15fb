-- The write model (source of truth), its transactional outbox and idempotency keys.
CREATE TABLE products (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description text CHECK (description IS NULL OR char_length(description) <= 5000),
    category    text NOT NULL CHECK (char_length(category) BETWEEN 1 AND 100),
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    status      text NOT NULL CHECK (status IN ('active', 'discontinued')),
    version     bigint NOT NULL CHECK (version >= 1),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX products_category_idx ON products (category);

CREATE TABLE outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_id      uuid NOT NULL,
    aggregate_version bigint NOT NULL,
    event_type        text NOT NULL,
    payload           jsonb NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    published_at      timestamptz,
    UNIQUE (aggregate_id, aggregate_version)
);

-- The relay scans only what is still unpublished; the purge only what was published.
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE idempotency_keys (
    key              text PRIMARY KEY,
    request_hash     text NOT NULL,
    response_status  integer NOT NULL,
    response_body    jsonb NOT NULL,
    response_headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
