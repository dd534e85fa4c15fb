"""Composition root of the projector process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from prometheus_client import CollectorRegistry, start_http_server
from pymongo import AsyncMongoClient

from catalog_read_models.projection import Projection
from catalog_read_models.store import ReadModelUnavailable, open_store
from projector.consumer import ConsumerConfig, Projector
from projector.metrics import ProjectorMetrics
from projector.settings import ProjectorSettings
from service_runtime.retry import Backoff, RetryStopped

log = logging.getLogger(__name__)

# The read model's store may come up after the projector: pick its adapter and create the
# indexes once it answers.
STORE_START = Backoff("opening the read models' store", retry_on=(ReadModelUnavailable,))
# Kafka may come up after the projector (any error of a client's start means "not reachable").
KAFKA_START = Backoff("connecting to Kafka", retry_on=(Exception,))


async def run_projector(settings: ProjectorSettings) -> None:
    """Run the projector until SIGTERM/SIGINT; then finish the batch, commit, leave the group."""
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_url,
        appname="catalog-projector",
        tz_aware=True,
        socketTimeoutMS=settings.mongodb_timeout_ms,
    )
    db = mongo[settings.mongodb_database]

    async def open_projection() -> Projection:
        projection = Projection(db, await open_store(db))
        await projection.ensure_indexes()
        return projection

    try:
        projection = await STORE_START.call(open_projection, stop=stop, logger=log)
    except RetryStopped:
        await mongo.close()
        return

    consumer = AIOKafkaConsumer(
        *settings.topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        group_instance_id=settings.group_instance_id,
        session_timeout_ms=settings.session_timeout_ms,
        client_id="catalog-projector",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=50,
        # Both topics have the same partition count and key: range assignment gives partition i
        # of both to one consumer, so one product's two streams are mostly applied by one
        # process (correctness does not depend on it).
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    dead_letters = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="catalog-projector-dlq",
        enable_idempotence=True,
        acks="all",
    )
    config = ConsumerConfig(
        batch_size=settings.batch_size,
        category_refresh_seconds=settings.category_refresh_seconds,
        category_refresh_share=settings.category_refresh_share,
        partition_concurrency=settings.partition_concurrency,
    )
    projector = Projector(config, consumer, dead_letters, projection, ProjectorMetrics(registry))
    try:
        await KAFKA_START.call(consumer.start, stop=stop, logger=log)
        await KAFKA_START.call(dead_letters.start, stop=stop, logger=log)
        await projector.run(stop)
    except RetryStopped:
        pass
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()  # leaves the group so partitions move at once
        with contextlib.suppress(Exception):
            await dead_letters.stop()
        await mongo.close()
        log.info("projector stopped")
