"""The command stage's baseline: asyncpg running the service's own transactions, no HTTP.

Each command is the transaction the command service runs (the row, its outbox event with the
same JSON, `pg_notify`), with the same statements, pool size and concurrency; what is left
between this and the service is HTTP, the gateway, validation and the domain model.

    python -m benchmarks.raw_command seed --dsn DSN --count N     (prints the ids)
    python -m benchmarks.raw_command load --dsn DSN --seconds S --concurrency C --ids FILE
    python -m benchmarks.raw_command paced --dsn DSN --rate R --seconds S  (prints commit times)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from benchmarks.common import open_loop
from command_service.adapters.postgres import (  # the service's jsonb codec and reset
    init_connection,
    keep_session,
)

COLUMNS = "id, name, description, category, price, stock, status, version, created_at, updated_at"
INSERT_PRODUCT = f"INSERT INTO products ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
SELECT_FOR_UPDATE = f"SELECT {COLUMNS} FROM products WHERE id = $1 FOR UPDATE"
UPDATE_PRODUCT = """
    UPDATE products
       SET name = $2, description = $3, category = $4, price = $5, stock = $6,
           status = $7, version = $8, updated_at = $9
     WHERE id = $1 AND version = $8 - 1
"""
INSERT_OUTBOX = """
    INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload, headers)
    VALUES ($1, $2, $3, $4, $5)
"""
NOTIFY = "SELECT pg_notify($1, '')"
CHANNEL = "catalog_outbox"
POOL_SIZE = 20  # the command service's pool_max_size


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "category": row["category"],
        "price": f"{row['price']:.2f}",
        "stock": row["stock"],
        "status": row["status"],
        "created_at": stamp(row["created_at"]),
        "updated_at": stamp(row["updated_at"]),
        "version": row["version"],
    }


def envelope(event_type: str, row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The outbox payload the service writes for this change (the contract's JSON)."""
    return {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "aggregate_id": str(row["id"]),
        "aggregate_version": row["version"],
        "occurred_at": stamp(row["updated_at"]),
        "correlation_id": str(uuid.uuid4()),
        "causation_id": None,
        "event_type": event_type,
        "data": data,
        "state": state_of(row),
    }


def headers(event_type: str) -> dict[str, str]:
    return {"event_type": event_type, "schema_version": "1", "content-type": "application/json"}


async def create(conn: asyncpg.Connection, number: int, categories: int) -> uuid.UUID:
    now = datetime.now(UTC)
    price = Decimal(f"{1 + number % 500}.{number % 100:02d}")
    product_id = uuid.uuid4()
    row: dict[str, Any] = {
        "id": product_id,
        "name": f"bench {number}",
        "description": None,
        "category": f"bench-c{number % categories:02d}",
        "price": price,
        "stock": 5,
        "status": "active",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    data = {k: state_of(row)[k] for k in ("name", "description", "category", "price", "stock")}
    async with conn.transaction():
        await conn.execute(INSERT_PRODUCT, *row.values())
        await conn.execute(
            INSERT_OUTBOX,
            row["id"],
            1,
            "ProductCreated",
            envelope("ProductCreated", row, data),
            headers("ProductCreated"),
        )
        await conn.execute(NOTIFY, CHANNEL)
    return product_id


async def adjust(conn: asyncpg.Connection, product_id: uuid.UUID) -> None:
    async with conn.transaction():
        current = await conn.fetchrow(SELECT_FOR_UPDATE, product_id)
        row = dict(current)
        row["stock"] += 1
        row["version"] += 1
        row["updated_at"] = datetime.now(UTC)
        await conn.execute(
            UPDATE_PRODUCT,
            row["id"],
            row["name"],
            row["description"],
            row["category"],
            row["price"],
            row["stock"],
            row["status"],
            row["version"],
            row["updated_at"],
        )
        data = {"quantity_change": 1, "new_stock": row["stock"], "reason": "bench"}
        await conn.execute(
            INSERT_OUTBOX,
            row["id"],
            row["version"],
            "ProductStockAdjusted",
            envelope("ProductStockAdjusted", row, data),
            headers("ProductStockAdjusted"),
        )
        await conn.execute(NOTIFY, CHANNEL)


@dataclass
class Tally:
    done: int = 0
    latencies: list[float] | None = None


async def pool(dsn: str) -> asyncpg.Pool:
    created = await asyncpg.create_pool(
        dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, init=init_connection, reset=keep_session
    )
    assert created is not None
    return created


async def seed(dsn: str, count: int, categories: int) -> list[str]:
    async with await pool(dsn) as connections:
        numbers = iter(range(count))
        ids: list[str] = []

        async def worker() -> None:
            for number in numbers:
                async with connections.acquire() as conn:
                    ids.append(str(await create(conn, number, categories)))

        await asyncio.gather(*(worker() for _ in range(16)))
    return ids


async def load(
    dsn: str, seconds: float, concurrency: int, ids: list[uuid.UUID], categories: int
) -> dict[str, Any]:
    """Half creates, half stock adjustments of seeded products, like the wrk request mix."""
    latencies: list[float] = []
    async with await pool(dsn) as connections:
        deadline = time.perf_counter() + seconds
        counter = 0

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                counter += 1
                started = time.perf_counter()
                async with connections.acquire() as conn:
                    if counter % 2:
                        await create(conn, counter, categories)
                    else:
                        await adjust(conn, random.choice(ids))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def paced(dsn: str, rate: float, seconds: float, categories: int) -> dict[str, float]:
    """Creates at a constant arrival rate; writes each product's commit time (wall clock).

    Open loop: a command is started at its scheduled time whatever the previous ones do, so
    a slow pipeline cannot lower the load it is measured under.
    """
    commits: dict[str, float] = {}
    async with await pool(dsn) as connections:

        async def one(number: int) -> None:
            async with connections.acquire() as conn:
                product_id = await create(conn, number, categories)
            commits[str(product_id)] = time.time()

        await open_loop(rate, seconds, one)
    return commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("seed", "load", "paced"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--ids", default="")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--out", default="", help="write the JSON result here, not to stdout")
    args = parser.parse_args()
    result: object
    if args.mode == "seed":
        result = uvloop.run(seed(args.dsn, args.count, args.categories))
    elif args.mode == "load":
        with open(args.ids) as source:
            ids = [uuid.UUID(line) for line in source.read().split()]
        result = uvloop.run(load(args.dsn, args.seconds, args.concurrency, ids, args.categories))
    else:
        result = uvloop.run(paced(args.dsn, args.rate, args.seconds, args.categories))
    if args.out:
        Path(args.out).write_text(json.dumps(result))
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
