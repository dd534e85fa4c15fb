"""Rebuild: replay both topics from offset 0 into a new generation, then switch readers to it.

Every read model of the registry gets a new collection; products and reviews are replayed in
whatever order the partitions yield them (the read models are correct in any order).

The live projector keeps running throughout. After the switch, the rebuild catches up once
more to the then-current end of every partition, so an event the live projector applied to the
old generation in the last moments before the switch is in the new one too; version guards make
the overlap harmless. The old generation is dropped once readers have had time to notice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from catalog_contracts.codec import EventDecodeError, decode_event
from catalog_contracts.events import CatalogEvent
from catalog_contracts.read_models import (
    GENERATION_COLLECTIONS,
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    Generation,
    generation_named,
    pointer_document,
)
from catalog_read_models.generations import Db, fixed_generation, live_generation
from catalog_read_models.projection import Projection
from catalog_read_models.store import open_store
from projector.settings import ProjectorSettings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did."""

    old: Generation
    new: Generation
    events: int
    undecodable: int
    seconds: float


class _Replay:
    """Reads assigned partitions up to target offsets and applies what it reads."""

    def __init__(self, consumer: AIOKafkaConsumer, projection: Projection, progress: Progress):
        self.consumer = consumer
        self.projection = projection
        self.progress = progress
        self.events = 0
        self.undecodable = 0

    async def until(
        self, targets: dict[TopicPartition, int], *, total: int, recompute: bool, phase: str
    ) -> None:
        remaining = {tp for tp, end in targets.items() if await self.consumer.position(tp) < end}
        last_report = 0.0
        done = 0
        while remaining:
            batches = await self.consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
            events: list[CatalogEvent] = []
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= targets[tp]:
                        break
                    try:
                        events.append(decode_event(message.value))
                    except EventDecodeError:
                        self.undecodable += 1  # the live projector dead-lettered it already
                    done += 1
            if events:
                await self.projection.apply(events, mark_categories=recompute)
                self.events += len(events)
            for tp in list(remaining):
                if await self.consumer.position(tp) >= targets[tp]:
                    remaining.discard(tp)
            now = time.monotonic()
            if now - last_report >= 1.0 or not remaining:
                share = 100.0 * done / total if total else 100.0
                self.progress(f"{phase}: {done:,} / {total:,} messages ({share:.1f}%)")
                last_report = now


async def topic_partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """The partition numbers of a topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [p["partition"] for d in described if d["topic"] == topic for p in d["partitions"]]
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    return partitions


async def rebuild(
    settings: ProjectorSettings,
    *,
    progress: Progress = print,
    grace_seconds: float = 3.0,
    db: Db | None = None,
) -> RebuildReport:
    """Replay both topics into a new generation of every read model and make it the live one."""
    started = time.monotonic()
    client: AsyncMongoClient[dict[str, Any]] | None = None
    if db is None:
        client = AsyncMongoClient(settings.mongodb_url, appname="catalog-rebuild", tz_aware=True)
        db = client[settings.mongodb_database]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="catalog-rebuild",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        old = await live_generation(db)()
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        new = generation_named(f"g{stamp}{uuid.uuid4().hex[:6]}")
        projection = Projection(db, await open_store(db), fixed_generation(new))
        await projection.ensure_indexes()
        await consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in settings.topics
            for p in sorted(await topic_partitions(settings.kafka_bootstrap_servers, topic))
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        begin = await consumer.beginning_offsets(tps)
        targets = await consumer.end_offsets(tps)
        total = sum(targets[tp] - begin[tp] for tp in tps)
        progress(f"rebuilding {old.name} -> {new.name} from {total:,} messages")
        replay = _Replay(consumer, projection, progress)
        await replay.until(targets, total=total, recompute=False, phase="replay")

        categories = await db[new.collection(PRODUCT_DETAIL_COLLECTION)].distinct("category")
        progress(f"computing {len(categories)} categories")
        await projection.recompute_categories(categories)

        await db[META_COLLECTION].replace_one(
            {"_id": GENERATION_POINTER_ID}, pointer_document(new), upsert=True
        )
        progress(f"switched readers to {new.name}")

        catch_up = await consumer.end_offsets(tps)
        extra = sum(catch_up[tp] - targets[tp] for tp in tps)
        await replay.until(catch_up, total=extra, recompute=True, phase="catch-up")
        await projection.refresh_categories()

        await asyncio.sleep(grace_seconds)  # every reader re-reads the pointer in this time
        if old != new:
            # Every collection a generation may hold, the pre-registry `products` included.
            for logical in GENERATION_COLLECTIONS:
                await db.drop_collection(old.collection(logical))
            progress(f"dropped {old.name}")
        report = RebuildReport(
            old, new, replay.events, replay.undecodable, time.monotonic() - started
        )
        progress(
            f"rebuild done: {report.events:,} events in {report.seconds:.1f}s"
            f" ({report.events / max(report.seconds, 1e-9):,.0f} events/s)"
        )
        return report
    finally:
        await consumer.stop()
        if client is not None:
            await client.close()
