"""The projector against real Kafka and a real MongoDB wire-protocol server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.codec import encode_event
from catalog_contracts.events import CatalogEvent, event_headers, message_key
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    GENERATION_COLLECTIONS,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    RATINGS_COLLECTION,
)
from catalog_read_models.projection import Projection
from catalog_read_models.store import ReadModelUnavailable
from command_service.relay.topics import ensure_topics
from projector.consumer import ConsumerConfig, Projector
from projector.metrics import ProjectorMetrics
from tests.fixtures.events import ProductHistory, ReviewHistory
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


def wire(event: CatalogEvent) -> tuple[bytes, bytes]:
    return str(message_key(event)).encode(), encode_event(event)


@pytest.fixture
async def reviews_topic(infra: Infra, topic: str) -> AsyncIterator[str]:
    """The reviews' topic beside the products' one, co-partitioned with it."""
    name = topic.replace("test.products.", "test.reviews.")
    await ensure_topics(
        infra.kafka_bootstrap_servers, topic, name, partitions=3, min_compaction_lag_ms=3600_000
    )
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([name, f"{name}.dlq"])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running_projector(
    infra: Infra,
    topics: tuple[str, ...],
    db: Db,
    metrics: ProjectorMetrics | None = None,
    projection: Projection | None = None,
) -> AsyncIterator[Projection]:
    projection = projection or await Projection.open(db)
    await projection.ensure_indexes()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=infra.kafka_bootstrap_servers,
        group_id=f"g-{topics[0]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    dead_letters = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await consumer.start()
    await dead_letters.start()
    config = ConsumerConfig(batch_size=200, poison_first_wait=0.05)
    projector = Projector(
        config,
        consumer,
        dead_letters,
        projection,
        metrics or ProjectorMetrics(CollectorRegistry()),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        yield projection
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
    products = mongo_db[PRODUCT_DETAIL_COLLECTION]
    listed = mongo_db[PRODUCT_LIST_COLLECTION]

    async def all_final() -> bool:
        return (
            await products.count_documents({"version": 4})
            == await listed.count_documents({"version": 4})
            == len(histories)
        )

    async with running_projector(infra, (topic,), mongo_db):
        await wait_for(all_final)
        # Feed the whole history again: nothing may change.
        before = await products.find({}).sort("_id").to_list()
        before_list = await listed.find({}).sort("_id").to_list()
        await publish(infra, topic, messages)
        await asyncio.sleep(2)
    after = await products.find({}).sort("_id").to_list()
    assert after == before
    assert await listed.find({}).sort("_id").to_list() == before_list
    doc = next(d for d in after if d["_id"] == str(histories[0].state.id))
    assert doc["stock"] == 8
    assert doc["price"] == "12.34"
    assert doc["price_cents"] == 1234
    assert doc["in_stock"] is True
    assert doc["rating"] == {
        "count": 0,
        "average": None,
        "distribution": dict.fromkeys("12345", 0),
    }
    item = next(d for d in before_list if d["_id"] == str(histories[0].state.id))
    assert (item["price"], item["in_stock"], item["rating_sort"]) == ("12.34", True, -1)


async def test_both_topics_give_products_their_ratings(
    infra: Infra, topic: str, reviews_topic: str, mongo_db: Db
) -> None:
    histories = [ProductHistory(name=f"p{i}") for i in range(6)]
    reviews = [
        ReviewHistory(h.state.id, rating=1 + (i + j) % 5, author=f"a{j}")
        for i, h in enumerate(histories)
        for j in range(3)
    ]
    reviews[0].remove()
    # The reviews go first: the projector sees many of them before their products.
    await publish(infra, reviews_topic, [wire(e) for r in reviews for e in r.events])
    await publish(infra, reviews_topic, [(b"k", b"not an event")])
    await publish(infra, topic, [wire(e) for h in histories for e in h.events])
    registry = CollectorRegistry()
    metrics = ProjectorMetrics(registry)

    async def rated() -> bool:
        return (
            await mongo_db[PRODUCT_DETAIL_COLLECTION].count_documents({"rating.count": {"$gt": 0}})
            == len(histories)
            and await mongo_db["category_members"].count_documents({"d": {"$gt": 0}}) == 0
        )

    async with running_projector(infra, (topic, reviews_topic), mongo_db, metrics):
        await wait_for(rated)
        await asyncio.sleep(1.5)  # one more refresh reports the staleness
    first = str(histories[0].state.id)
    detail = await mongo_db[PRODUCT_DETAIL_COLLECTION].find_one({"_id": first})
    listed = await mongo_db[PRODUCT_LIST_COLLECTION].find_one({"_id": first})
    assert detail is not None
    assert listed is not None
    # The first product's reviews: 1 (removed), 2, 3.
    assert detail["rating"]["count"] == listed["rating_count"] == 2
    assert detail["rating"]["average"] == listed["rating_average"] == "2.50"
    assert [r["rating"] for r in detail["latest_reviews"]] in ([2, 3], [3, 2])
    assert await mongo_db[RATINGS_COLLECTION].count_documents({}) == len(histories)
    staleness = registry.get_sample_value("projector_categories_staleness_seconds")
    assert staleness == 0.0
    dead = await _dead_letters(infra, f"{reviews_topic}.dlq", 1)
    assert [dict(r.headers)["dlq.source.topic"] for r in dead] == [reviews_topic.encode()]


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
        # Batches write the products' contributions; the refresh folds them into the figures.
        docs = {doc["_id"]: doc async for doc in categories.find({})}
        return (
            set(docs) == {"a", "b"}
            and await mongo_db["category_members"].count_documents({"d": {"$gt": 0}}) == 0
            and docs["b"]["total_stock"] == 0
        )

    async with running_projector(infra, (topic,), mongo_db):
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
    async with running_projector(infra, (topic,), mongo_db):
        await wait_for(lambda: _exists(mongo_db, str(good.state.id)))
    records = await _dead_letters(infra, f"{topic}.dlq", 2)
    reasons = sorted(dict(r.headers)["dlq.error.reason"].decode() for r in records)
    assert reasons == ["invalid_json", "unknown_event_type"]
    assert all(dict(r.headers)["dlq.source.topic"] == topic.encode() for r in records)


async def test_an_event_that_keeps_failing_is_dead_lettered_and_its_partition_moves_on(
    infra: Infra, topic: str, mongo_db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned, after = ProductHistory(), ProductHistory()
    # Its application fails whatever the store does, until the file is gone.
    monkeypatch.setenv("CATALOG_FAULT_DIR", str(tmp_path))
    (tmp_path / f"poison-{poisoned.state.id}").touch()
    key = str(poisoned.state.id).encode()  # both on one partition: the second must not wait
    messages = [(key, encode_event(poisoned.events[0])), (key, encode_event(after.events[0]))]
    await publish(infra, topic, messages)
    metrics = ProjectorMetrics(CollectorRegistry())
    async with running_projector(infra, (topic,), mongo_db, metrics):
        await wait_for(lambda: _exists(mongo_db, str(after.state.id)))
    [record] = await _dead_letters(infra, f"{topic}.dlq", 1)
    headers = dict(record.headers)
    assert headers["dlq.error.reason"] == b"apply-failed"
    assert b"InjectedFailure" in headers["dlq.error.detail"]
    assert record.value == messages[0][1]
    assert not await _exists(mongo_db, str(poisoned.state.id))
    # Tried three times in the batch, three times alone.
    assert metrics.retries._value.get() == 6


class FlakyStore(Projection):
    """The real projection behind a store that is unreachable for its first `outages` batches."""

    outages = 5

    async def apply(self, events: Any) -> Any:
        if self.outages:
            self.outages -= 1
            raise ReadModelUnavailable("store unreachable (injected)")
        return await super().apply(events)


async def test_a_store_outage_is_retried_and_never_dead_letters(
    infra: Infra, topic: str, mongo_db: Db
) -> None:
    history = ProductHistory()
    await publish(infra, topic, [wire(history.events[0])])
    projection = await FlakyStore.open(mongo_db)
    metrics = ProjectorMetrics(CollectorRegistry())
    async with running_projector(infra, (topic,), mongo_db, metrics, projection):
        await wait_for(lambda: _exists(mongo_db, str(history.state.id)))
    # More outages than an event's attempts, and still applied, not dead-lettered.
    assert metrics.retries._value.get() >= 5
    assert await _dead_letters(infra, f"{topic}.dlq", 1) == []


class SlowStore(Projection):
    """The real projection, every batch taking 0.3 s more; counts the batches applied at once."""

    running = 0
    most = 0

    async def apply(self, events: Any, **options: Any) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.3)
            return await super().apply(events, **options)
        finally:
            self.running -= 1


async def test_partitions_are_applied_side_by_side(infra: Infra, topic: str, mongo_db: Db) -> None:
    histories = [ProductHistory(name=f"p{i}") for i in range(30)]
    await publish(infra, topic, [wire(history.events[0]) for history in histories])
    projection = await SlowStore.open(mongo_db)

    async def every_one() -> bool:
        ids = [str(history.state.id) for history in histories]
        return (
            await mongo_db[PRODUCT_DETAIL_COLLECTION].count_documents({"_id": {"$in": ids}}) == 30
        )

    async with running_projector(infra, (topic,), mongo_db, projection=projection):
        await wait_for(every_one)
    # The topic has 3 partitions; one poll returns messages of each.
    assert 2 <= projection.most <= 3


async def _dead_letters(infra: Infra, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        records: list[Any] = []
        for _ in range(40):
            for batch in (await consumer.getmany(timeout_ms=250)).values():
                records.extend(batch)
            if len(records) >= count:
                break
    finally:
        await consumer.stop()
    return records


async def _exists(db: Db, product_id: str) -> bool:
    return await db[PRODUCT_DETAIL_COLLECTION].find_one({"_id": product_id}) is not None


def test_event_headers_name_type_and_version() -> None:
    headers = dict(event_headers(ProductHistory().events[0], "00-abc-def-01"))
    assert headers["event_type"] == b"ProductCreated"
    assert headers["schema_version"] == b"2"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"] == b"00-abc-def-01"


async def test_rebuild_replays_both_topics_into_a_new_generation_while_writes_continue(
    infra: Infra, topic: str, reviews_topic: str, mongo_db: Db
) -> None:
    from catalog_contracts.read_models import BASE_GENERATION
    from catalog_read_models.generations import live_generation
    from projector.rebuild import rebuild
    from projector.settings import ProjectorSettings

    histories = [ProductHistory(category=f"cat{i % 3}", price=f"{i + 1}.00") for i in range(30)]
    for i, history in enumerate(histories):
        history.adjust(-(i % 6))
        history.reprice(f"{i + 2}.25")
    reviews = [
        ReviewHistory(h.state.id, rating=1 + i % 5, author=f"a{i}")
        for i, h in enumerate(histories)
        if i % 2 == 0
    ]
    for review in reviews[::4]:
        review.remove()
    await publish(infra, topic, [wire(e) for h in histories for e in h.events])
    await publish(infra, reviews_topic, [wire(e) for r in reviews for e in r.events])
    await publish(infra, topic, [(b"bad", b"not an event")])
    # Written while the rebuild replays: the live projector and the catch-up both see them.
    late = [ProductHistory(category="cat0", price="3.00") for _ in range(5)]
    late_reviews = [
        ReviewHistory(histories[1].state.id, rating=4, author=f"late{i}") for i in range(5)
    ]

    async def converged(expected_products: int, expected_reviews: int) -> bool:
        generation = await live_generation(mongo_db)()
        categories = mongo_db[generation.collection(CATEGORIES_COLLECTION)]
        detail = mongo_db[generation.collection(PRODUCT_DETAIL_COLLECTION)]
        return (
            await detail.count_documents({}) == expected_products
            and await mongo_db[generation.collection("reviews")].count_documents({})
            == expected_reviews
            and await categories.count_documents({}) == 3
            and await mongo_db[generation.collection("category_members")].count_documents(
                {"d": {"$gt": 0}}
            )
            == 0
        )

    async def keep_writing() -> None:
        for product, review in zip(late, late_reviews, strict=True):
            await asyncio.sleep(0.05)
            await publish(infra, topic, [wire(e) for e in product.events])
            await publish(infra, reviews_topic, [wire(e) for e in review.events])

    live_names = [n for n in GENERATION_COLLECTIONS if n != "products"]
    async with running_projector(infra, (topic, reviews_topic), mongo_db):
        await wait_for(lambda: converged(len(histories), len(reviews)))
        lines: list[str] = []
        settings = ProjectorSettings(
            KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
            EVENTS_TOPIC=topic,
            REVIEWS_TOPIC=reviews_topic,
        )
        writer = asyncio.create_task(keep_writing())
        report = await rebuild(settings, progress=lines.append, grace_seconds=0.5, db=mongo_db)
        await writer
        total = len(histories) + len(late)
        await wait_for(lambda: converged(total, len(reviews) + len(late_reviews)))
        await asyncio.sleep(1.5)  # the live projector's last refresh of the new generation
        live = {
            name: strip(await mongo_db[report.new.collection(name)].find({}).to_list())
            for name in live_names
        }

    assert report.old == BASE_GENERATION
    assert report.events >= len(histories) * 3 + sum(len(r.events) for r in reviews)
    assert report.undecodable == 1
    assert any("replay:" in line and "100.0%" in line for line in lines)
    assert (await live_generation(mongo_db)()) == report.new
    names = await mongo_db.list_collection_names()
    assert not set(live_names) & set(names)
    # The new generation equals a projection of everything from scratch.
    expected = await projected_from_scratch(
        mongo_db, [*histories, *late], [*reviews, *late_reviews], {"cat0", "cat1", "cat2"}
    )
    for name in live_names:
        assert live[name] == expected[name], name
    second = await mongo_db[report.new.collection(PRODUCT_LIST_COLLECTION)].find_one(
        {"_id": str(histories[1].state.id)}
    )
    assert second is not None
    assert second["rating_count"] == len(late_reviews)


# What a generation's documents hold for the projector's own bookkeeping, not for readers.
INTERNAL = {"_folds", "d", "rev", "rating_rev"}


def strip(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Documents without their bookkeeping fields, in `_id` order, to compare generations."""
    return sorted(
        ({k: v for k, v in d.items() if k not in INTERNAL} for d in docs), key=lambda d: d["_id"]
    )


async def projected_from_scratch(
    db: Db,
    histories: list[ProductHistory],
    reviews: list[ReviewHistory],
    categories: set[str],
) -> dict[str, list[dict[str, Any]]]:
    """Every collection of a generation ("check") that projects these histories' events from
    nothing, stripped of bookkeeping."""
    fresh = await Projection.open(db, _fixed("check"))
    everything: list[CatalogEvent] = [e for h in histories for e in h.events] + [
        e for r in reviews for e in r.events
    ]
    await fresh.apply(everything)
    await fresh.recompute_categories(categories)
    check = await fresh.generation()
    return {
        name: strip(await db[check.collection(name)].find({}).to_list())
        for name in GENERATION_COLLECTIONS
    }


def _fixed(name: str) -> Any:
    from catalog_contracts.read_models import generation_named
    from catalog_read_models.generations import fixed_generation

    return fixed_generation(generation_named(name))
