"""Fault scenarios, each injected while the load runs, through stackctl or straight into Kafka."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from catalog_contracts.codec import EventDecodeError, decode_event
from catalog_contracts.events import REVIEWS_TOPIC
from service_runtime.faults import PROJECTOR_AFTER_APPLY, RELAY_AFTER_ACK
from tests.fixtures.infra import Infra


@dataclass
class Outcome:
    dead_lettered: int = 0
    note: str = ""


Inject = Callable[[Infra], Awaitable[Outcome]]


async def ctl(infra: Infra, *args: str) -> None:
    await asyncio.to_thread(infra.stackctl, *args)


def kill(name: str) -> Inject:
    async def inject(infra: Infra) -> Outcome:
        await ctl(infra, "kill", name)
        await asyncio.sleep(1.0)
        await ctl(infra, "start", name)  # the supervisor restarted it; wait until healthy
        return Outcome(note=f"SIGKILL {name}")

    return inject


def stop_start(name: str, down_for: float = 4.0) -> Inject:
    async def inject(infra: Infra) -> Outcome:
        await ctl(infra, "stop", name)
        await asyncio.sleep(down_for)
        await ctl(infra, "start", name)
        return Outcome(note=f"{name} down {down_for:.0f}s")

    return inject


def crash_at(point: str, name: str) -> Inject:
    """Arm a crash point and prove the process died exactly there."""

    async def inject(infra: Infra) -> Outcome:
        assert infra.stack_dir is not None
        trigger = Path(infra.stack_dir) / "fault-triggers" / point
        trigger.touch()
        deadline = time.monotonic() + 60
        while trigger.exists():
            assert time.monotonic() < deadline, f"{name} never reached {point}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await ctl(infra, "start", name)
        # Whichever of the processes `name` covers reached the point first (relay, relay-2, ...).
        logs = Path(infra.stack_dir) / "logs"
        crashed = [
            log.stem
            for log in [logs / f"{name}.log", *logs.glob(f"{name}-*.log")]
            if log.exists() and f"fault injection: crashing at {point}" in log.read_text()
        ]
        assert crashed, f"no log of {name} says it crashed at {point}"
        return Outcome(note=f"{crashed[0]} crashed at {point}")

    return inject


async def _recent_events(infra: Infra, count: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(infra.events_topic) or set()
        if not parts:
            await consumer.topics()
        tps = [TopicPartition(infra.events_topic, p) for p in range(6)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, ends[tp] - count // len(tps)))
        records: list[tuple[bytes | None, bytes | None]] = []
        for _ in range(20):
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records += [(m.key, m.value) for m in batch]
            if len(records) >= count:
                break
        return records
    finally:
        await consumer.stop()


async def _produce(infra: Infra, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(infra.events_topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def duplicates_and_reordering(infra: Infra) -> Outcome:
    recent = await _recent_events(infra, 120)
    replay = recent * 2
    random.Random(5).shuffle(replay)
    await _produce(infra, replay)
    return Outcome(note=f"re-injected {len(replay)} old events, shuffled")


async def _dead_letter_count(infra: Infra) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(f"{infra.events_topic}.dlq", 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def poison(infra: Infra) -> Outcome:
    before = await _dead_letter_count(infra)
    await _produce(
        infra,
        [
            (b"poison-1", b"\x00\x01garbage"),
            (b"poison-2", b'{"event_type": "ProductCreated", "schema_version": 1, "state": 3}'),
            (b"poison-3", b'{"event_type": "ProductTeleported", "schema_version": 1}'),
        ],
    )
    deadline = time.monotonic() + 60
    while (after := await _dead_letter_count(infra)) < before + 3:
        assert time.monotonic() < deadline, "poison messages did not reach the dead-letter topic"
        await asyncio.sleep(0.5)
    return Outcome(dead_lettered=after - before, note="3 poison messages")


PROXY = "projector-mongo"  # deploy/local/stack_parts.py: the projector's link to MongoDB


async def slow_then_partitioned_mongo(infra: Infra) -> Outcome:
    """The projector's link to MongoDB turns slow, then silent, then refuses connections.

    toxiproxy adds 200±100 ms each way, then a `timeout` toxic swallows every byte without
    closing anything (a partition nobody announces), then the proxy is disabled, which resets
    open connections and refuses new ones. A product created while the link is silent must
    stay invisible until it heals: that shows the partition really held.
    """
    if infra.toxiproxy_url is None:
        pytest.skip("the projector's MongoDB link goes through toxiproxy only in a native stack")
    async with (
        httpx.AsyncClient(base_url=infra.toxiproxy_url, timeout=10) as api,
        httpx.AsyncClient(base_url=infra.gateway_url, timeout=10, headers=infra.auth) as gateway,
    ):

        async def toxiproxy(method: str, path: str, body: object = None) -> None:
            response = await api.request(method, path, json=body)
            assert response.status_code < 300, f"toxiproxy {method} {path}: {response.text}"

        try:
            for stream in ("upstream", "downstream"):
                slow = {"latency": 200, "jitter": 100}
                await toxiproxy(
                    "POST",
                    f"/proxies/{PROXY}/toxics",
                    {
                        "name": f"slow-{stream}",
                        "type": "latency",
                        "stream": stream,
                        "attributes": slow,
                    },
                )
            await asyncio.sleep(5)
            await toxiproxy(
                "POST",
                f"/proxies/{PROXY}/toxics",
                {"name": "silent", "type": "timeout", "attributes": {"timeout": 0}},
            )
            created = await gateway.post(
                "/api/v1/products",
                json={
                    "name": "during the partition",
                    "category": "faults-partition",
                    "price": "1.00",
                    "stock": 1,
                },
            )
            assert created.status_code == 201, created.text
            await asyncio.sleep(5)
            product = created.json()["id"]
            seen = await gateway.get(f"/api/v1/products/{product}")
            assert seen.status_code == 404, "the projector wrote through a silent link"
            await toxiproxy("POST", f"/proxies/{PROXY}", {"enabled": False})
            await asyncio.sleep(4)
        finally:
            await toxiproxy("POST", "/reset")  # every proxy enabled, every toxic removed
        deadline = time.monotonic() + 120
        while (await gateway.get(f"/api/v1/products/{product}")).status_code != 200:
            assert time.monotonic() < deadline, "the projector did not recover after the partition"
            await asyncio.sleep(0.5)
    return Outcome(note="slow 5s, silent 5s, refused 4s")


async def _topic_ends(infra: Infra) -> dict[TopicPartition, int]:
    """The end offsets of the products' and reviews' topics, every partition."""
    topics = [infra.events_topic, REVIEWS_TOPIC]
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    await asyncio.sleep(0)  # see order_on_the_topics
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def order_on_the_topics(
    infra: Infra, since: dict[TopicPartition, int]
) -> tuple[int, list[str]]:
    """How many messages were published after `since`, and where an aggregate's versions are
    out of order among them: a version may come again (a republish after a hand-over), but
    each new one must be the next (never skipped, never before an earlier one)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    # Let the consumer's own task start: aiokafka's stop() right after start() cancels it
    # before its first step, and the CancelledError escapes stop().
    await asyncio.sleep(0)
    try:
        consumer.assign(list(since))
        ends = await consumer.end_offsets(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        order = VersionOrder()
        count = 0
        remaining = {tp for tp in since if ends[tp] > since[tp]}
        while remaining:
            for tp, batch in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                for message in batch:
                    if message.offset >= ends[tp]:
                        break
                    count += 1
                    try:
                        event = decode_event(message.value)
                    except EventDecodeError:
                        continue  # another scenario's poison
                    order.see(
                        f"{event.aggregate_type}:{event.aggregate_id}",
                        event.aggregate_version,
                        f"{tp.topic}@{message.offset}",
                    )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return count, order.violations
    finally:
        await consumer.stop()


class VersionOrder:
    """Each aggregate's versions in the order a topic holds them: one may come again (a
    republish after a relay hand-over), but each new one must be the next, never skipped nor
    ahead of an earlier one. The first seen of an aggregate starts its sequence."""

    def __init__(self) -> None:
        self.newest: dict[str, int] = {}
        self.violations: list[str] = []

    def see(self, aggregate: str, version: int, where: str) -> None:
        seen = self.newest.get(aggregate)
        if seen is not None and version > seen + 1:
            self.violations.append(f"{aggregate}: v{version} after v{seen} ({where})")
        self.newest[aggregate] = version if seen is None else max(seen, version)


def relays_changing(*steps: tuple[str, str, float]) -> Inject:
    """stackctl ACTION NAME, then a pause, for each step, under load; then the order of every
    aggregate's events published meanwhile is checked on the topics."""

    async def inject(infra: Infra) -> Outcome:
        since = await _topic_ends(infra)
        for action, name, pause in steps:
            await ctl(infra, action, name)
            await asyncio.sleep(pause)
        await ctl(infra, "start", "relay")  # every relay up and healthy again
        await asyncio.sleep(2.0)  # the relays settle their shares and drain the outbox
        count, violations = await order_on_the_topics(infra, since)
        assert count > 0, "nothing was published meanwhile"
        assert violations == [], violations[:10]
        done = ", ".join(f"{action} {name}" for action, name, _ in steps)
        return Outcome(note=f"{done}; order kept in {count} messages")

    return inject


SCENARIOS: dict[str, Inject] = {
    "kill command": kill("command"),
    "kill relay": kill("relay"),  # every relay: `relay` names them all
    "kill one of two relays": relays_changing(("kill", "relay-2", 1.0)),
    "relays join and leave": relays_changing(
        ("stop", "relay-2", 3.0), ("start", "relay-2", 3.0), ("stop", "relay-2", 3.0)
    ),
    "kill projector": kill("projector"),
    "kill query": kill("query"),
    "kill gateway": kill("gateway"),
    "stop/start kafka": stop_start("kafka"),
    "stop/start postgres": stop_start("postgres"),
    "stop/start mongo": stop_start("mongo"),
    "projector dies between write and commit": crash_at(PROJECTOR_AFTER_APPLY, "projector"),
    "relay dies between ack and mark": crash_at(RELAY_AFTER_ACK, "relay"),
    "duplicated and reordered events": duplicates_and_reordering,
    "poison messages": poison,
    "slow then partitioned projector-mongo link": slow_then_partitioned_mongo,
}
