"""Least privilege in PostgreSQL, against the real server: the migrator owns the schema, the
command service's role reads and writes its tables and nothing more, the relay's role reads,
marks and purges the outbox and cannot see products or reviews."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from command_service.adapters.migrate import (
    SEQUENCE_GRANTS,
    TABLE_GRANTS,
    RuntimeRoles,
    migrate,
)
from command_service.adapters.postgres import UnitOfWorkFactory, create_pool
from command_service.handlers import (
    CommandHandlers,
    CreateProduct,
    RequestContext,
    SubmitReview,
)
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration

PASSWORD = "test-only-role-password"


@dataclass(frozen=True)
class RoleUrls:
    database: str
    migrator: str
    command: str
    relay: str
    roles: RuntimeRoles
    migrator_role: str


def _url(base: str, user: str, database: str) -> str:
    host = base.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{user}:{PASSWORD}@{host}/{database}"


@pytest.fixture
async def role_urls(infra: Infra) -> AsyncIterator[RoleUrls]:
    """A fresh database owned by a fresh migrator, migrated by it, and two runtime roles.

    Roles are cluster-wide: unique names keep this test clear of the stack's own roles and of
    other runs on the same server.
    """
    prefix = f"t{uuid.uuid4().hex[:10]}"
    database = f"{prefix}_db"
    migrator, command, relay = (f"{prefix}_{kind}" for kind in ("migrator", "command", "relay"))
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        for role in (migrator, command, relay):
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER {migrator}')
    finally:
        await admin.close()
    # The public schema of a database owned by a non-superuser still lets PUBLIC create in it
    # before PostgreSQL 15; the bootstraps revoke that, so does this test.
    admin_db = await asyncpg.connect(infra.admin_database_url.rsplit("/", 1)[0] + f"/{database}")
    try:
        await admin_db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await admin_db.execute(f"GRANT CREATE ON SCHEMA public TO {migrator}")
    finally:
        await admin_db.close()
    roles = RuntimeRoles(command=command, relay=relay)
    urls = RoleUrls(
        database=database,
        migrator=_url(infra.database_url, migrator, database),
        command=_url(infra.database_url, command, database),
        relay=_url(infra.database_url, relay, database),
        roles=roles,
        migrator_role=migrator,
    )
    await migrate(urls.migrator, roles=roles)
    yield urls
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (command, relay, migrator):
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


async def _connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(url)
    return conn


async def test_the_migrator_owns_every_table(role_urls: RoleUrls) -> None:
    conn = await _connect(role_urls.migrator)
    try:
        owners = dict(
            await conn.fetch(
                """
                SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')
                """
            )
        )
        tables = {
            name
            for (name,) in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await conn.close()
    assert {"products", "reviews", "outbox", "idempotency_keys", "schema_migrations"} <= tables
    assert set(owners.values()) == {role_urls.migrator_role}, owners
    # A table a future migration adds must be listed for the command role (or deliberately
    # left to the migrator alone): this is where a forgotten grant shows up.
    assert tables - {"schema_migrations"} == set(TABLE_GRANTS["command"])
    assert set(SEQUENCE_GRANTS["command"]) <= set(owners)


async def test_the_command_role_runs_commands(role_urls: RoleUrls) -> None:
    pool = await create_pool(role_urls.command, min_size=1, max_size=2)
    try:
        handlers = CommandHandlers(UnitOfWorkFactory(pool), idempotency_ttl=timedelta(hours=1))
        created = await handlers.create_product(
            CreateProduct(
                name="Kettle", description=None, category="kitchen", price="30.00", stock=3
            ),
            RequestContext(idempotency_key="k1", caller="tester"),
        )
        replayed = await handlers.create_product(
            CreateProduct(
                name="Kettle", description=None, category="kitchen", price="30.00", stock=3
            ),
            RequestContext(idempotency_key="k1", caller="tester"),
        )
        assert replayed.replayed
        assert replayed.outcome == created.outcome
        await handlers.submit_review(
            SubmitReview(
                product_id=created.outcome.aggregate_id,
                rating=5,
                title="Boils",
                body=None,
                author="tester",
            ),
            RequestContext(),
        )
    finally:
        await pool.close()
    admin = await _connect(role_urls.migrator)
    try:
        assert await admin.fetchval("SELECT count(*) FROM outbox") == 2
    finally:
        await admin.close()


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE products ADD COLUMN colour text",
        "DROP TABLE outbox",
        "TRUNCATE products",
        "CREATE TABLE sneaky (id int)",
        "DELETE FROM products",
        "SELECT * FROM schema_migrations",
    ],
)
async def test_the_command_role_cannot_change_the_schema(
    role_urls: RoleUrls, statement: str
) -> None:
    conn = await _connect(role_urls.command)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def _seed_outbox(role_urls: RoleUrls) -> None:
    conn = await _connect(role_urls.migrator)
    try:
        await conn.execute(
            """
            INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload)
            VALUES ($1, 1, 'ProductCreated', '{}'::jsonb), ($2, 1, 'ProductCreated', '{}'::jsonb)
            """,
            uuid.uuid4(),
            uuid.uuid4(),
        )
        await conn.execute(
            """
            INSERT INTO idempotency_keys (caller, key, request_hash, outcome, expires_at)
            VALUES ('c', 'expired', 'h', '{}'::jsonb, now() - interval '1 hour')
            """
        )
    finally:
        await conn.close()


async def test_the_relay_role_reads_marks_and_purges_the_outbox(role_urls: RoleUrls) -> None:
    await _seed_outbox(role_urls)
    conn = await _connect(role_urls.relay)
    try:
        await conn.execute("LISTEN catalog_outbox")
        ids = [
            r["id"] for r in await conn.fetch("SELECT id FROM outbox WHERE published_at IS NULL")
        ]
        assert len(ids) == 2
        marked = await conn.execute(
            "UPDATE outbox SET published_at = now() - interval '2 days' WHERE id = ANY($1)", ids
        )
        assert marked == "UPDATE 2"
        purged = await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - interval '1 day'"
        )
        assert purged == "DELETE 2"
        expired = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
        assert expired == "DELETE 1"
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM products",
        "SELECT * FROM reviews",
        "DELETE FROM products",
        "UPDATE reviews SET status = 'removed'",
        "INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload) "
        "VALUES (gen_random_uuid(), 1, 'x', '{}')",
        "UPDATE outbox SET payload = '{}'",
        "SELECT outcome FROM idempotency_keys",
        "ALTER TABLE outbox ADD COLUMN x int",
        "DROP TABLE outbox",
    ],
)
async def test_the_relay_role_cannot_touch_anything_else(
    role_urls: RoleUrls, statement: str
) -> None:
    conn = await _connect(role_urls.relay)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_migrating_again_keeps_the_privileges_exact(role_urls: RoleUrls) -> None:
    """Re-applying the grants revokes what the table no longer lists (here: a stray grant)."""
    owner = await _connect(role_urls.migrator)
    try:
        await owner.execute(f"GRANT SELECT ON products TO {role_urls.roles.relay}")
    finally:
        await owner.close()
    assert await migrate(role_urls.migrator, roles=role_urls.roles) == []
    conn = await _connect(role_urls.relay)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM products")
    finally:
        await conn.close()
