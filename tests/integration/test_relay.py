"""The relay against real PostgreSQL and Kafka: each type to its topic, in order, none lost."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, stop_after_delay, wait_fixed

from catalog_contracts.codec import decode_event
from catalog_contracts.events import REVIEWS_TOPIC
from command_service.adapters.postgres import UnitOfWorkFactory, init_connection
from command_service.handlers import (
    AdjustStock,
    ChangePrice,
    CommandHandlers,
    CreateProduct,
    RequestContext,
)
from command_service.relay.bootstrap import build_relay
from command_service.relay.relay import OutboxRelay, RelayConfig, RelayMetrics
from command_service.relay.topics import TopicLayoutError, ensure_topics
from command_service.settings import CommandSettings
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def admin_client(infra: Infra) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def reviews_topic(infra: Infra, topic: str) -> AsyncIterator[str]:
    """A fresh reviews topic beside `topic` (so co-partitioned with it) and its dead letters."""
    name = f"test.reviews.{uuid4().hex[:12]}"
    await ensure_topics(
        infra.kafka_bootstrap_servers, topic, name, partitions=3, min_compaction_lag_ms=3600_000
    )
    yield name
    async with admin_client(infra) as admin:
        await admin.delete_topics([name, f"{name}.dlq"])


def relay_settings(
    infra: Infra, database_url: str, topic: str, reviews_topic: str = REVIEWS_TOPIC
) -> CommandSettings:
    return CommandSettings(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
        EVENTS_TOPIC=topic,
        REVIEWS_TOPIC=reviews_topic,
        relay_poll_interval_seconds=0.2,
    )


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running_relay(
    infra: Infra, database_url: str, topic: str, reviews_topic: str = REVIEWS_TOPIC
) -> AsyncIterator[None]:
    settings = relay_settings(infra, database_url, topic, reviews_topic)
    async with running(build_relay(settings, CollectorRegistry())):
        yield


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
        ids.append(created.outcome.aggregate_id)
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


async def test_a_products_rows_share_one_shard_and_products_spread_over_all(
    pg_pool: asyncpg.Pool,
) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    created = await handlers.create_product(
        CreateProduct(name="sharded", description=None, category="c", price="1.00", stock=10),
        RequestContext(),
    )
    product_id = created.outcome.aggregate_id
    await handlers.adjust_stock(AdjustStock(product_id, -1), RequestContext())
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT outbox_shards()") == 16
        shards = await conn.fetch("SELECT shard FROM outbox WHERE aggregate_id = $1", product_id)
        assert len(shards) == 2
        assert {row["shard"] for row in shards} == {
            await conn.fetchval("SELECT outbox_shard($1)", product_id)
        }
        spread = await conn.fetch(
            "SELECT outbox_shard(gen_random_uuid()) AS shard FROM generate_series(1, 3200)"
        )
    counts = collections.Counter(row["shard"] for row in spread)
    assert set(counts) == set(range(16))
    assert min(counts.values()) > 100  # 200 each on average


async def test_a_relay_publishes_only_the_shards_it_is_given(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    for i in range(40):
        await handlers.create_product(
            CreateProduct(name=f"s{i}", description=None, category="c", price="1.00", stock=1),
            RequestContext(),
        )
    relay = build_relay(relay_settings(infra, database_url, topic), CollectorRegistry())
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    await producer.start()
    try:
        published = await relay.publish_backlog(conn, producer, shards=range(8))
        left = await conn.fetch("SELECT DISTINCT shard FROM outbox WHERE published_at IS NULL")
        done = await conn.fetch("SELECT DISTINCT shard FROM outbox WHERE published_at IS NOT NULL")
    finally:
        await producer.stop()
        await conn.close()
    assert 0 < published < 40
    assert {row["shard"] for row in done} <= set(range(8))
    assert {row["shard"] for row in left} <= set(range(8, 16))


async def append(
    conn: asyncpg.Connection,
    aggregate_type: str | None,
    aggregate_id: UUID,
    version: int,
    key: UUID | None,
    label: str,
) -> None:
    """An outbox row as a writer leaves it; no aggregate type is a writer from before 0003."""
    event_type = {"product": "ProductCreated", "review": "ReviewSubmitted", None: "Legacy"}
    payload = {"label": label}
    headers = {"event_type": event_type[aggregate_type]}
    if aggregate_type is None:
        await conn.execute(
            "INSERT INTO outbox (aggregate_id, aggregate_version, event_type, payload, headers)"
            " VALUES ($1, $2, $3, $4, $5)",
            *(aggregate_id, version, headers["event_type"], payload, headers),
        )
    else:
        await conn.execute(
            "INSERT INTO outbox (aggregate_type, aggregate_id, aggregate_version, message_key,"
            " event_type, payload, headers) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *(aggregate_type, aggregate_id, version, key, headers["event_type"], payload, headers),
        )


def labels_by_key(records: list) -> dict[bytes, list[str]]:  # type: ignore[type-arg]
    """Each key's labels in topic order (a key lives in one partition, which keeps its order)."""
    labels: dict[bytes, list[str]] = {}
    for record in records:
        labels.setdefault(record.key, []).append(orjson.loads(record.value)["label"])
    return labels


def partition_of(records: list) -> dict[bytes, int]:  # type: ignore[type-arg]
    return {record.key: record.partition for record in records}


async def test_each_aggregate_type_goes_to_its_topic_keyed_by_product(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str, reviews_topic: str
) -> None:
    first, second, legacy = uuid4(), uuid4(), uuid4()
    review_a, review_b, review_c = uuid4(), uuid4(), uuid4()
    # (aggregate type, aggregate id, version, message key, label), in outbox id order; a
    # review's rows are keyed by its product, and the legacy row has neither type nor key.
    rows: list[tuple[str | None, UUID, int, UUID | None, str]] = [
        ("product", first, 1, first, "first-1"),
        ("review", review_a, 1, first, "a-1"),
        ("product", second, 1, second, "second-1"),
        ("review", review_c, 1, second, "c-1"),
        ("product", first, 2, first, "first-2"),
        ("review", review_b, 1, first, "b-1"),
        ("review", review_a, 2, first, "a-2"),
        (None, legacy, 1, None, "legacy-1"),
        ("product", second, 2, second, "second-2"),
    ]
    async with pg_pool.acquire() as conn:
        for row in rows:
            await append(conn, *row)

    registry = CollectorRegistry()
    relay = build_relay(relay_settings(infra, database_url, topic, reviews_topic), registry)
    async with running(relay):
        products = await consume(infra, topic, 5)
        reviews = await consume(infra, reviews_topic, 4)

    def expected(types: set[str | None]) -> dict[bytes, list[str]]:
        labels: dict[bytes, list[str]] = {}
        for aggregate_type, aggregate_id, _, key, label in rows:
            if aggregate_type in types:
                labels.setdefault(str(key or aggregate_id).encode(), []).append(label)
        return labels

    assert labels_by_key(products) == expected({"product", None})
    assert labels_by_key(reviews) == expected({"review"})
    assert {dict(r.headers)["event_type"] for r in reviews} == {b"ReviewSubmitted"}
    # Co-partitioned: a product's events have the same partition number in both topics.
    product_partitions = partition_of(products)
    for key, partition in partition_of(reviews).items():
        assert product_partitions[key] == partition
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0

    def published(event_type: str, to: str) -> float | None:
        labels = {"event_type": event_type, "topic": to}
        return registry.get_sample_value("relay_events_published_total", labels)

    assert published("ReviewSubmitted", reviews_topic) == published("ProductCreated", topic) == 4


async def sample_reaches(
    registry: CollectorRegistry, name: str, labels: dict[str, str], value: float
) -> float | None:
    """The sample once it has `value`, or what it has after ten seconds."""
    deadline = asyncio.get_running_loop().time() + 10
    while (sample := registry.get_sample_value(name, labels)) != value:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    return sample


async def test_rows_of_a_type_without_a_topic_wait_reported_and_block_nothing(
    infra: Infra,
    pg_pool: asyncpg.Pool,
    database_url: str,
    topic: str,
    reviews_topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    product = uuid4()
    async with pg_pool.acquire() as conn:
        # More waiting rows than a batch holds, all before the rows that can go.
        for version in (1, 2, 3):
            await append(conn, "review", uuid4(), version, product, f"review-{version}")
        for version in (1, 2):
            await append(conn, "product", product, version, product, f"product-{version}")

    registry = CollectorRegistry()
    products_only = OutboxRelay(
        RelayConfig(dsn=database_url, topics={"product": topic}, batch_size=2, poll_interval=0.2),
        lambda: AIOKafkaProducer(
            bootstrap_servers=infra.kafka_bootstrap_servers, enable_idempotence=True, acks="all"
        ),
        RelayMetrics(registry),
    )
    with caplog.at_level(logging.ERROR, logger="command_service.relay.relay"):
        async with running(products_only):
            records = await consume(infra, topic, 2)
            waiting = await sample_reaches(
                registry, "outbox_unroutable_rows", {"aggregate_type": "review"}, 3
            )
            # The gauges are refreshed every second, beside the publishing.
            backlog = await sample_reaches(registry, "outbox_backlog_rows", {}, 3)
    assert [orjson.loads(r.value)["label"] for r in records] == ["product-1", "product-2"]
    assert waiting == 3
    assert backlog == 3, "the rows that wait keep the backlog alerts firing"
    assert any("'review' have no topic" in r.getMessage() for r in caplog.records)

    # Not lost: a relay that knows their topic publishes them, in order.
    async with running_relay(infra, database_url, topic, reviews_topic):
        reviews = await consume(infra, reviews_topic, 3)
    assert labels_by_key(reviews) == {str(product).encode(): ["review-1", "review-2", "review-3"]}


async def test_a_topic_added_beside_existing_ones_gets_their_partition_count(
    infra: Infra, topic: str
) -> None:
    added, uneven = (f"test.reviews.{uuid4().hex[:12]}" for _ in range(2))
    bootstrap = infra.kafka_bootstrap_servers
    async with admin_client(infra) as admin:
        await admin.create_topics([NewTopic(uneven, 2, 1)])
        try:
            created = await ensure_topics(
                bootstrap, topic, added, partitions=5, min_compaction_lag_ms=3600_000
            )
            assert created == [added, f"{added}.dlq"]
            expected = {topic: 3, added: 3, f"{added}.dlq": 1}
            # A topic created a moment ago is briefly described with no partitions.
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(10), wait=wait_fixed(0.1), reraise=True
            ):
                with attempt:
                    described = await admin.describe_topics(list(expected))
                    partitions = {d["topic"]: len(d["partitions"]) for d in described}
                    assert partitions == expected
            with pytest.raises(TopicLayoutError):
                await ensure_topics(
                    bootstrap, topic, uneven, partitions=3, min_compaction_lag_ms=3600_000
                )
        finally:
            await admin.delete_topics([added, f"{added}.dlq", uneven])
