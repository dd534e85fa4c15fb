"""Migrations on a populated database: every row of the previous schema survives, converted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from command_service.adapters.migrate import load_migrations, migrate
from command_service.adapters.postgres import init_connection
from tests.fixtures.infra import Infra
from tests.fixtures.resources import fresh_database

pytestmark = pytest.mark.integration

PRODUCTS = 500
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def empty_database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database with no migration applied; dropped afterwards."""
    async with fresh_database(infra, "migrate") as url:
        yield url


async def populate_schema_1(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Products, their outbox rows (half published) and idempotency keys as 0001 stored them."""
    ids = [uuid.uuid4() for _ in range(PRODUCTS)]
    await conn.executemany(
        """
        INSERT INTO products (id, name, description, category, price, stock, status, version,
                              created_at, updated_at)
        VALUES ($1, $2, NULL, 'kitchen', 12.50, 3, 'active', 1, $3, $3)
        """,
        [(pid, f"product {i}", NOW) for i, pid in enumerate(ids)],
    )
    await conn.executemany(
        """
        INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload, headers,
                            published_at)
        VALUES ($1, 1, 'ProductCreated', $2, '{"event_type": "ProductCreated"}', $3)
        """,
        [
            (pid, {"event_type": "ProductCreated", "schema_version": 1}, NOW if i % 2 else None)
            for i, pid in enumerate(ids)
        ],
    )
    await conn.executemany(
        """
        INSERT INTO idempotency_keys (key, request_hash, response_status, response_body,
                                      response_headers, expires_at)
        VALUES ($1, 'h', 201, $2, '{}', now() + interval '1 hour')
        """,
        [(f"key-{i}", {"id": str(pid), "version": 1}) for i, pid in enumerate(ids[:50])],
    )
    return ids


async def test_every_row_survives_the_later_migrations(empty_database_url: str) -> None:
    assert await migrate(empty_database_url, target=1) == [1]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await init_connection(conn)
        ids = await populate_schema_1(conn)
        later = [m.version for m in load_migrations() if m.version > 1]
        assert await migrate(empty_database_url) == later

        assert await conn.fetchval("SELECT count(*) FROM products") == PRODUCTS
        rows = await conn.fetch(
            "SELECT aggregate_id, aggregate_type, message_key, published_at FROM outbox"
        )
        assert len(rows) == PRODUCTS
        assert {r["aggregate_type"] for r in rows} == {"product"}
        assert all(r["message_key"] == r["aggregate_id"] for r in rows)
        assert sum(r["published_at"] is None for r in rows) == PRODUCTS // 2

        keys = await conn.fetch("SELECT caller, key, outcome FROM idempotency_keys ORDER BY key")
        assert len(keys) == 50
        outcome = keys[0]["outcome"]  # jsonb, decoded by the service's codec
        assert keys[0]["caller"] == ""
        assert outcome["command"] == "create_product"
        assert outcome["version"] == 1
        assert outcome["created"] is True
        assert uuid.UUID(outcome["aggregate_id"]) in set(ids)

        # The new tables are usable on the migrated data.
        await conn.execute(
            """
            INSERT INTO reviews (id, product_id, rating, title, body, author, status, version,
                                 created_at, updated_at)
            VALUES ($1, $2, 5, 'Great', NULL, 'ada', 'published', 1, now(), now())
            """,
            uuid.uuid4(),
            ids[0],
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                """
                INSERT INTO reviews (id, product_id, rating, title, body, author, status,
                                     version, created_at, updated_at)
                VALUES ($1, $2, 1, 'Again', NULL, 'ada', 'published', 1, now(), now())
                """,
                uuid.uuid4(),
                ids[0],
            )
    finally:
        await conn.close()
