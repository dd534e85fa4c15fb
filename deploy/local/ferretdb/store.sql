-- Tuning of FerretDB's own PostgreSQL database (applied by stackctl; idempotent).
--
-- FerretDB v1 pushes an equality filter down to PostgreSQL as
--     _jsonb -> $1 @> $2
-- and turns each MongoDB index into a btree on (_jsonb -> 'field'). A btree cannot answer `@>`,
-- so every find, update and replace scans the whole collection: at 50,000 documents a lookup by
-- _id took ~50 ms. Two changes let PostgreSQL use an index for those filters:
--
-- 1. custom plans only: with the key bound as a constant, the filter becomes
--    _jsonb -> '_id' @> '"…"', an expression an index can match (a generic plan keeps $1);
-- 2. a GIN "twin" of the leading key of every index FerretDB creates: GIN on (_jsonb -> 'k')
--    answers `@>`, as MongoDB answers an equality on an index's leading key.
--
-- Measured at 50,000 documents: find by _id 51 ms -> 2.7 ms, replace by _id 59 ms -> 8 ms.
-- A real MongoDB (MONGODB_URL) needs none of this.

ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;

CREATE OR REPLACE FUNCTION catalog_gin_twin(index_oid oid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    method text;
    key_expression text;
    tbl regclass;
BEGIN
    SELECT am.amname, pg_get_indexdef(i.indexrelid, 1, false), i.indrelid::regclass
      INTO method, key_expression, tbl
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam
     WHERE i.indexrelid = index_oid;
    IF method IS DISTINCT FROM 'btree' OR key_expression NOT LIKE '%(_jsonb -> %' THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON %s USING gin (%s)',
        'gin_' || left(md5(tbl::text || key_expression), 20),
        tbl,
        key_expression
    );
END
$$;

CREATE OR REPLACE FUNCTION catalog_gin_twins_on_create_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    command record;
BEGIN
    FOR command IN
        SELECT objid FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE INDEX'
    LOOP
        PERFORM catalog_gin_twin(command.objid);
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS catalog_gin_twins;
CREATE EVENT TRIGGER catalog_gin_twins ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION catalog_gin_twins_on_create_index();

-- Indexes FerretDB created before this file was applied.
SELECT catalog_gin_twin(i.indexrelid)
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public');
