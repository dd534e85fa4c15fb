"""Numbered SQL migrations, applied once each, safe to run concurrently from several replicas."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any fixed key works; it only has to be the same for every replica.
MIGRATION_LOCK_KEY = 0x636174616C6F67  # "catalog"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped with this package, in version order."""
    folder = resources.files("command_service.adapters.migrations")
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return migrations


@dataclass(frozen=True, slots=True)
class RuntimeRoles:
    """The PostgreSQL roles the command service and the relay connect as."""

    command: str = "catalog_command"
    relay: str = "catalog_relay"


RUNTIME_ROLES = RuntimeRoles()

# What each runtime role may do, table by table: the one place a new table gets its readers and
# writers. `migrate` re-applies it after every run (revoking what it no longer lists), so a table
# a migration adds is reachable by neither service until it is listed here: least privilege by
# default, rather than default privileges that would hand every future table to both.
TABLE_GRANTS: dict[str, dict[str, str]] = {
    "command": {
        "products": "SELECT, INSERT, UPDATE",
        "reviews": "SELECT, INSERT, UPDATE",
        "outbox": "INSERT",
        "idempotency_keys": "SELECT, INSERT, UPDATE",
    },
    "relay": {
        # Reads and marks what it publishes; the purge deletes what was published long ago.
        "outbox": "SELECT, UPDATE (published_at), DELETE",
        # The purge's `DELETE … WHERE expires_at <= now()` reads that column, and only that one.
        "idempotency_keys": "SELECT (expires_at), DELETE",
    },
}
SEQUENCE_GRANTS: dict[str, dict[str, str]] = {
    "command": {"outbox_id_seq": "USAGE"},  # the outbox's identity column
    "relay": {},
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def grant_runtime_roles(conn: asyncpg.Connection, roles: RuntimeRoles) -> list[str]:
    """Give each existing runtime role exactly its privileges; return the roles granted to.

    A role that does not exist is skipped, so a database migrated without them (a test
    database, a single-role development setup) still migrates.
    """
    granted = []
    for kind, role in (("command", roles.command), ("relay", roles.relay)):
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            log.warning("role %s does not exist: no privileges granted to it", role)
            continue
        async with conn.transaction():
            # One transaction: a running service never sees its privileges half re-applied.
            await conn.execute(f"GRANT USAGE ON SCHEMA public TO {_ident(role)}")
            await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {_ident(role)}")
            await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {_ident(role)}")
            # A partial migration (`target`) may not have created every listed object yet.
            for kind_of, grants in (("TABLE", TABLE_GRANTS), ("SEQUENCE", SEQUENCE_GRANTS)):
                for name, privileges in grants[kind].items():
                    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{name}"):
                        await conn.execute(
                            f"GRANT {privileges} ON {kind_of} {name} TO {_ident(role)}"
                        )
        granted.append(role)
    return granted


async def migrate(
    dsn: str, *, target: int | None = None, roles: RuntimeRoles = RUNTIME_ROLES
) -> list[int]:
    """Apply every pending migration (up to `target`), then the runtime roles' privileges.

    Returns the versions this call applied. Run it as the role that owns the schema (the
    migrator): the tables it creates are that role's, and only an owner may grant on them.
    """
    conn = await asyncpg.connect(dsn)
    try:
        # A session lock serializes replicas; each migration commits on its own.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            done = []
            for migration in load_migrations():
                if migration.version in applied:
                    continue
                if target is not None and migration.version > target:
                    break
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                done.append(migration.version)
            # Under the lock too: concurrent GRANTs on one table can fail ("tuple concurrently
            # updated").
            await grant_runtime_roles(conn, roles)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
