"""Kafka helpers of the harness: bench topics, a group's progress, arrival times of events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


async def create_topic(bootstrap: str, topic: str, partitions: int = 6) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """A topic's partitions, from the broker (a fresh consumer's metadata may not have them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    finally:
        await admin.close()


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await partitions(bootstrap, topic))
        return sum(ends.values())
    finally:
        await stop_quietly(consumer)


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a group-less consumer; aiokafka may raise a stray CancelledError from its tasks."""
    with contextlib.suppress(asyncio.CancelledError):
        await consumer.stop()


async def group_progress(admin: AIOKafkaAdminClient, group: str) -> int:
    """Messages a consumer group has committed, over all partitions."""
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(max(0, meta.offset) for meta in offsets.values())


async def _count_until(
    count: Callable[[], Awaitable[int]], total: int, limit: float
) -> tuple[float | None, int, int]:
    """Ask `count` every 0.2 s until it reaches `total` or `limit` seconds pass.

    Returns the seconds from its first answer above 0 (None if there was none), what it
    counted since then, and its last answer.
    """
    deadline = time.monotonic() + limit
    first: tuple[float, int] | None = None
    done = 0
    while time.monotonic() < deadline:
        done = await count()
        now = time.perf_counter()
        if first is None and done > 0:
            first = (now, done)
        if done >= total and first is not None:
            return now - first[0], done - first[1], done
        await asyncio.sleep(0.2)
    if first is None:
        return None, 0, done
    return time.perf_counter() - first[0], done - first[1], done


async def watch_group(bootstrap: str, group: str, total: int, limit: float) -> tuple[float, int]:
    """Wait until `group` committed `total` messages; (seconds from first commit, messages since).

    Timing starts at the first commit, so joining the group and the first fetch, the same for
    every mode, are left out.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    last = 0

    async def committed() -> int:
        nonlocal last
        with contextlib.suppress(Exception):  # the group may not exist yet: keep the last
            last = await group_progress(admin, group)
        return last

    try:
        seconds, since, _ = await _count_until(committed, total, limit)
    finally:
        await admin.close()
    if seconds is None:
        raise RuntimeError(f"group {group} committed nothing in {limit:.0f}s")
    return seconds, since


async def watch_topic(bootstrap: str, topic: str, total: int, limit: float) -> tuple[float, int]:
    """Wait until `topic` holds `total` messages; (seconds from the first, messages since).

    A publisher's rate seen from the broker, for publishers that mark nothing in the outbox.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = await partitions(bootstrap, topic)

        async def held() -> int:
            return sum((await consumer.end_offsets(parts)).values())

        seconds, since, done = await _count_until(held, total, limit)
    finally:
        await stop_quietly(consumer)
    if seconds is None or done < total:
        raise RuntimeError(f"{topic} holds {done} of {total} messages after {limit:.0f}s")
    return seconds, since


class ArrivalClock:
    """Wall-clock arrival time of each product's first event on a topic, from now on."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
        )
        self._topic = topic
        self._bootstrap = bootstrap
        self.arrivals: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        parts = await partitions(self._bootstrap, self._topic)
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:
            await self._consumer.position(tp)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    key = orjson.loads(message.value)["aggregate_id"]
                    self.arrivals.setdefault(key, now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await stop_quietly(self._consumer)
