"""The relay against real PostgreSQL and Kafka: ordered, keyed, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from catalog_contracts.codec import decode_event
from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.handlers import (
    AdjustStock,
    ChangePrice,
    CommandHandlers,
    CreateProduct,
    RequestContext,
)
from command_service.relay.bootstrap import build_relay
from command_service.settings import CommandSettings
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running_relay(infra: Infra, database_url: str, topic: str) -> AsyncIterator[None]:
    settings = CommandSettings(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
        EVENTS_TOPIC=topic,
        relay_poll_interval_seconds=0.2,
    )
    relay = build_relay(settings, CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def consume(infra: Infra, topic: str, count: int, seconds: float = 30) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


async def test_relay_publishes_every_event_in_order_keyed_by_product(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    ids = []
    for i in range(5):
        created = await handlers.create_product(
            CreateProduct(name=f"p{i}", description=None, category="c", price="1.00", stock=10),
            RequestContext(),
        )
        ids.append(created.outcome.product_id)
    for product_id in ids:
        await handlers.adjust_stock(AdjustStock(product_id, -1), RequestContext())
        await handlers.change_price(ChangePrice(product_id, "2.50"), RequestContext())

    async with running_relay(infra, database_url, topic):
        records = await consume(infra, topic, 15)

    assert len(records) == 15
    per_product: dict[str, list[int]] = {}
    for record in records:
        event = decode_event(record.value)
        assert record.key == str(event.aggregate_id).encode()
        assert dict(record.headers)["event_type"] == event.event_type.encode()
        per_product.setdefault(str(event.aggregate_id), []).append(event.aggregate_version)
    assert all(versions == [1, 2, 3] for versions in per_product.values())
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
