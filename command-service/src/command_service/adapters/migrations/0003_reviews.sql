-- Reviews, the second aggregate: one published review per author and product.
CREATE TABLE reviews (
    id         uuid PRIMARY KEY,
    product_id uuid NOT NULL REFERENCES products (id),
    rating     smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title      text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    body       text CHECK (body IS NULL OR char_length(body) <= 5000),
    author     text NOT NULL CHECK (char_length(author) BETWEEN 1 AND 200),
    status     text NOT NULL CHECK (status IN ('published', 'removed')),
    version    bigint NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The rule "one published review per author and product" holds even against a writer that
-- bypasses the handlers; the handlers check first to answer 409 instead of an error.
CREATE UNIQUE INDEX reviews_one_published_per_author
    ON reviews (product_id, author) WHERE status = 'published';
CREATE INDEX reviews_product_created_idx ON reviews (product_id, created_at DESC);

-- Each outbox row names its aggregate type (which topic it goes to) and its message key (the
-- product id, for a review's events too). Rows written before this migration, and by writers
-- of the previous release during a rolling upgrade, are products' events: the default type is
-- right for them and their key is their aggregate id (backfilled here; the relay reads
-- coalesce(message_key, aggregate_id) for what an old writer adds after this).
ALTER TABLE outbox
    ADD COLUMN aggregate_type text NOT NULL DEFAULT 'product'
        CHECK (aggregate_type IN ('product', 'review')),
    ADD COLUMN message_key uuid;
UPDATE outbox SET message_key = aggregate_id WHERE message_key IS NULL;
