"""The projector against real Kafka and a real MongoDB wire-protocol server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.codec import encode_event
from catalog_contracts.events import ProductEvent, event_headers
from catalog_read_models.writer import ReadModelWriter
from projector.consumer import ConsumerConfig, Projector
from projector.metrics import ProjectorMetrics
from tests.fixtures.events import ProductHistory
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]


async def publish(infra: Infra, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def wire(event: ProductEvent) -> tuple[bytes, bytes]:
    return str(event.aggregate_id).encode(), encode_event(event)


@contextlib.asynccontextmanager
async def running_projector(infra: Infra, topic: str, db: Db) -> AsyncIterator[ReadModelWriter]:
    writer = ReadModelWriter(db)
    await writer.ensure_indexes()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap_servers,
        group_id=f"g-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    dead_letters = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await consumer.start()
    await dead_letters.start()
    config = ConsumerConfig(topic=topic, dead_letter_topic=f"{topic}.dlq", batch_size=200)
    projector = Projector(
        config, consumer, dead_letters, writer, ProjectorMetrics(CollectorRegistry())
    )
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        yield writer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await consumer.stop()
        await dead_letters.stop()


async def wait_for(predicate: Any, seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def test_projects_newest_state_despite_duplicates_and_reordering(
    infra: Infra, topic: str, mongo_db: Db
) -> None:
    histories = [ProductHistory(name=f"p{i}", stock=10) for i in range(10)]
    for history in histories:
        history.adjust(-3)
        history.reprice("12.34")
        history.adjust(+1)
    messages = [wire(e) for h in histories for e in h.events]
    shuffled = messages + random.Random(7).sample(messages, len(messages))  # dupes, reordered
    random.Random(11).shuffle(shuffled)
    await publish(infra, topic, shuffled)
    products = mongo_db["products"]

    async def all_final() -> bool:
        return await products.count_documents({"version": 4}) == len(histories)

    async with running_projector(infra, topic, mongo_db):
        await wait_for(all_final)
        # Feed the whole history again: nothing may change.
        before = await products.find({}).sort("_id").to_list()
        await publish(infra, topic, messages)
        await asyncio.sleep(2)
    after = await products.find({}).sort("_id").to_list()
    assert after == before
    doc = next(d for d in after if d["_id"] == str(histories[0].state.id))
    assert doc["stock"] == 8
    assert doc["price"] == "12.34"
    assert doc["price_cents"] == 1234
    assert doc["in_stock"] is True


async def test_categories_equal_the_aggregation_of_products(
    infra: Infra, topic: str, mongo_db: Db
) -> None:
    a1 = ProductHistory(category="a", price="5.00", stock=2)
    a2 = ProductHistory(category="a", price="7.50", stock=0)
    b1 = ProductHistory(category="b", price="1.00", stock=4)
    b1.adjust(-4)
    await publish(infra, topic, [wire(e) for h in (a1, a2, b1) for e in h.events])
    categories = mongo_db["categories"]

    async def settled() -> bool:
        # Batches mark the categories they touch; the refresh writes the figures (unmarked).
        docs = {doc["_id"]: doc async for doc in categories.find({})}
        return (
            set(docs) == {"a", "b"}
            and not any("_dirty" in doc for doc in docs.values())
            and docs["b"]["total_stock"] == 0
        )

    async with running_projector(infra, topic, mongo_db):
        await wait_for(settled)
    a = await categories.find_one({"_id": "a"})
    assert a is not None
    assert (a["product_count"], a["in_stock_count"], a["total_stock"]) == (2, 1, 2)
    assert (a["min_price"], a["max_price"]) == ("5.00", "7.50")


async def test_poison_messages_go_to_the_dead_letter_topic(
    infra: Infra, topic: str, mongo_db: Db
) -> None:
    good = ProductHistory()
    await publish(
        infra,
        topic,
        [
            (b"k1", b"\x00\xffnot json"),
            (b"k2", b'{"event_type": "ProductExploded", "schema_version": 1}'),
            wire(good.events[0]),
        ],
    )
    async with running_projector(infra, topic, mongo_db):
        await wait_for(lambda: _exists(mongo_db, str(good.state.id)))
    consumer = AIOKafkaConsumer(
        f"{topic}.dlq",
        bootstrap_servers=infra.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        records = []
        for _ in range(40):
            for batch in (await consumer.getmany(timeout_ms=250)).values():
                records.extend(batch)
            if len(records) >= 2:
                break
    finally:
        await consumer.stop()
    reasons = sorted(dict(r.headers)["dlq.error.reason"].decode() for r in records)
    assert reasons == ["invalid_json", "unknown_event_type"]
    assert all(dict(r.headers)["dlq.source.topic"] == topic.encode() for r in records)


async def _exists(db: Db, product_id: str) -> bool:
    return await db["products"].find_one({"_id": product_id}) is not None


def test_event_headers_name_type_and_version() -> None:
    headers = dict(event_headers(ProductHistory().events[0], "00-abc-def-01"))
    assert headers["event_type"] == b"ProductCreated"
    assert headers["schema_version"] == b"2"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"] == b"00-abc-def-01"


async def test_rebuild_replays_into_a_new_generation_equal_to_the_live_one(
    infra: Infra, topic: str, mongo_db: Db
) -> None:
    from catalog_contracts.read_models import BASE_GENERATION
    from projector.rebuild import rebuild
    from projector.settings import ProjectorSettings
    from query_service.read_models import ProductFilter, ProductReadModel

    histories = [ProductHistory(category=f"cat{i % 3}", price=f"{i + 1}.00") for i in range(30)]
    for i, history in enumerate(histories):
        history.adjust(-(i % 6))
        history.reprice(f"{i + 2}.25")
    await publish(infra, topic, [wire(e) for h in histories for e in h.events])
    await publish(infra, topic, [(b"bad", b"not an event")])

    def strip(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in d.items() if k != "_seq"} for d in docs), key=lambda d: d["_id"]
        )

    async def converged() -> bool:
        categories = mongo_db["categories"]
        return (
            await mongo_db["products"].count_documents({"version": 3}) == len(histories)
            and await categories.count_documents({}) == 3
            and await categories.count_documents({"_dirty": True}) == 0
        )

    async with running_projector(infra, topic, mongo_db):
        await wait_for(converged)
        await asyncio.sleep(0.5)
        live_products = strip(await mongo_db["products"].find({}).to_list())
        live_categories = strip(await mongo_db["categories"].find({}).to_list())
        lines: list[str] = []
        settings = ProjectorSettings(
            KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
            EVENTS_TOPIC=topic,
        )
        report = await rebuild(settings, progress=lines.append, grace_seconds=0.2, db=mongo_db)

    assert report.old == BASE_GENERATION
    assert report.events == len(histories) * 3
    assert report.undecodable == 1
    assert any("replay:" in line and "100.0%" in line for line in lines)
    assert strip(await mongo_db[report.new.products].find({}).to_list()) == live_products
    assert strip(await mongo_db[report.new.categories].find({}).to_list()) == live_categories
    names = await mongo_db.list_collection_names()
    assert "products" not in names
    assert "categories" not in names
    reader = ProductReadModel(mongo_db, refresh_seconds=0)
    assert (await reader.generation()) == report.new
    page = await reader.list_products(ProductFilter(), sort="name", limit=200, cursor=None)
    assert len(page.items) == len(histories)
