"""The relay's and the projector's backlog: mixed events over a bounded set of products.

Creates, price changes, stock adjustments and renames, in a random order that keeps each
product's versions in sequence (as the relay publishes them). The products are a fixed number
(Sizes.backlog_products, the relay's and the projector's `products`), so the projector's
figure does not move with the catalog's size, while every event is still a real change to apply.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from benchmarks.raw_command import envelope, headers, state_of
from command_service.adapters.postgres import init_connection


@dataclass(frozen=True, slots=True)
class OutboxRow:
    aggregate_id: uuid.UUID
    version: int
    event_type: str
    payload: dict[str, Any]


def mixed_events(events: int, products: int, categories: int, seed: int = 7) -> list[OutboxRow]:
    """`events` changes over `products` products; the first change of each is its creation."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    rows: dict[int, dict[str, Any]] = {}
    out: list[OutboxRow] = []
    for n in range(events):
        index = rng.randrange(products)
        moment = start + timedelta(microseconds=n)
        row = rows.get(index)
        if row is None:
            row = {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "name": f"backlog {index}",
                "description": None,
                "category": f"bench-b{index % categories:02d}",
                "price": Decimal(f"{1 + index % 900}.{index % 100:02d}"),
                "stock": 10,
                "status": "active",
                "version": 1,
                "created_at": moment,
                "updated_at": moment,
            }
            rows[index] = row
            data = {k: state_of(row)[k] for k in ("name", "description", "category")}
            data |= {"price": state_of(row)["price"], "stock": 10}
            event_type = "ProductCreated"
        else:
            row["version"] += 1
            row["updated_at"] = moment
            kind = rng.random()
            if kind < 0.45:
                old = state_of(row)["price"]
                row["price"] = Decimal(rng.randrange(100, 100_000)) / 100
                data = {"old_price": old, "new_price": state_of(row)["price"]}
                event_type = "ProductPriceChanged"
            elif kind < 0.9:
                change = rng.choice((-1, 1, 2))
                row["stock"] = max(0, row["stock"] + change)
                data = {"quantity_change": change, "new_stock": row["stock"], "reason": None}
                event_type = "ProductStockAdjusted"
            else:
                previous = row["name"]
                row["name"] = f"backlog {index} v{row['version']}"
                data = {"changes": {"name": row["name"]}, "previous": {"name": previous}}
                event_type = "ProductDetailsUpdated"
        out.append(
            OutboxRow(row["id"], row["version"], event_type, envelope(event_type, row, data))
        )
    return out


async def insert_outbox(dsn: str, rows: list[OutboxRow], *, one_transaction: bool = False) -> int:
    """Append the rows to the outbox unpublished; returns the first outbox id they got.

    With `one_transaction`, the whole backlog commits at once: a change-data-capture reader
    then sees all of it together, as a polling relay sees a backlog that is already there.
    """
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        transaction = conn.transaction()
        if one_transaction:
            await transaction.start()
        first: int | None = None
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            ids = await conn.fetch(
                """
                INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload, headers)
                SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[], $5::jsonb[])
                RETURNING id
                """,
                [r.aggregate_id for r in chunk],
                [r.version for r in chunk],
                [r.event_type for r in chunk],
                [r.payload for r in chunk],
                [headers(r.event_type) for r in chunk],
            )
            low = min(row["id"] for row in ids)
            first = low if first is None else min(first, low)
        if one_transaction:
            await transaction.commit()
        assert first is not None
        return first
    finally:
        await conn.close()
