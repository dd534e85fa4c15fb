"""Dead letters: read them, and re-publish them to their source topic once each.

Each events topic has a `<topic>.dlq` of one partition, so a dead letter is named by its topic
and its own offset. A replay re-publishes the message (its key, value and original headers,
without the projector's `dlq.*` ones) to the source topic, then records the dead letter in the
compacted topic `catalog.dlq.replays` (key `<dlq topic>:<offset>`): a dead letter found there is
not replayed again. A crash between the two steps can publish a message twice; the projector's
version guards make the second one change nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

REPLAYS_TOPIC = "catalog.dlq.replays"
REPLAYED_HEADER = "dlq.replay.of"


def dead_letter_topic(source: str) -> str:
    """The dead-letter topic of an events topic (the projector's naming)."""
    return f"{source}.dlq"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter, with where it came from and why."""

    topic: str
    offset: int
    timestamp_ms: int
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    reason: str
    detail: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(repr=False)
    replayed: bool = False

    @property
    def name(self) -> str:
        """`<dlq topic>:<offset>`: unique, and the key of its replay record."""
        return f"{self.topic}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        """What `dlq list --json` prints."""
        return {
            "topic": self.topic,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "reason": self.reason,
            "detail": self.detail,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "replayed": self.replayed,
        }

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The message's own headers, and which dead letter it is a replay of."""
        own = [(name, value) for name, value in self.headers if not name.startswith("dlq.")]
        return [*own, (REPLAYED_HEADER, self.name.encode())]


def _header(headers: dict[str, bytes], name: str) -> str:
    return headers.get(name, b"").decode(errors="replace")


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partitions of each topic ([] for one that does not exist), by one admin client."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = [topic for topic in wanted if topic in set(await admin.list_topics())]
        found = {
            description["topic"]: sorted(p["partition"] for p in description["partitions"])
            for description in (await admin.describe_topics(existing) if existing else [])
        }
    finally:
        await admin.close()
    return {topic: found.get(topic, []) for topic in wanted}


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, from its first offset to its end when read."""
    partitions = (await partitions_of(bootstrap, [topic]))[topic]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        # An explicit seek: seek_to_beginning() can lose to the reset the assignment started.
        for tp, first in (await consumer.beginning_offsets(assigned)).items():
            consumer.seek(tp, first)
        records: list[Any] = []
        remaining = {tp for tp in assigned if ends[tp] > await consumer.position(tp)}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in fetched.items():
                records.extend(r for r in batch if r.offset < ends[tp])
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()


async def replayed(bootstrap: str) -> set[str]:
    """The names of the dead letters replayed so far."""
    return {
        record.key.decode()
        for record in await _read_all(bootstrap, REPLAYS_TOPIC)
        if record.key is not None and record.value
    }


async def dead_letters(bootstrap: str, source_topics: Iterable[str]) -> list[DeadLetter]:
    """Every dead letter of the source topics, oldest first per topic."""
    done = await replayed(bootstrap)
    letters = []
    for source in source_topics:
        topic = dead_letter_topic(source)
        for record in await _read_all(bootstrap, topic):
            headers = {name: value for name, value in record.headers or ()}
            letter = DeadLetter(
                topic=topic,
                offset=record.offset,
                timestamp_ms=record.timestamp,
                source_topic=_header(headers, "dlq.source.topic") or source,
                source_partition=_number(_header(headers, "dlq.source.partition")),
                source_offset=_number(_header(headers, "dlq.source.offset")),
                reason=_header(headers, "dlq.error.reason"),
                detail=_header(headers, "dlq.error.detail"),
                key=record.key,
                value=record.value,
                headers=tuple(record.headers or ()),
                replayed=f"{topic}:{record.offset}" in done,
            )
            letters.append(letter)
    return letters


def select(letters: list[DeadLetter], offset: int, topic: str | None) -> DeadLetter:
    """The dead letter at `offset` (of `topic`, a source or dead-letter topic name)."""
    found = [
        letter
        for letter in letters
        if letter.offset == offset and topic in (None, letter.topic, letter.source_topic)
    ]
    if not found:
        raise ValueError(f"no dead letter at offset {offset}" + (f" of {topic}" if topic else ""))
    if len(found) > 1:
        topics = ", ".join(letter.topic for letter in found)
        raise ValueError(f"offset {offset} is in {topics}: name one with --topic")
    return found[0]


async def _ensure_replays_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if REPLAYS_TOPIC in await admin.list_topics():
            return
        brokers = len((await admin.describe_cluster())["brokers"])
        topic = NewTopic(
            REPLAYS_TOPIC,
            num_partitions=1,
            replication_factor=min(3, brokers),
            topic_configs={"cleanup.policy": "compact"},
        )
        with contextlib.suppress(TopicAlreadyExistsError):  # another replay made it meanwhile
            await admin.create_topics([topic])
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    replayed: list[DeadLetter]
    skipped: list[DeadLetter]  # replayed before


async def replay(
    bootstrap: str,
    letters: list[DeadLetter],
    *,
    dry_run: bool = False,
    progress: Callable[[DeadLetter], None] = lambda _: None,
) -> ReplayOutcome:
    """Re-publish each dead letter not replayed yet to its source topic, then record it."""
    todo = [letter for letter in letters if not letter.replayed]
    skipped = [letter for letter in letters if letter.replayed]
    if dry_run or not todo:
        return ReplayOutcome(todo if dry_run else [], skipped)
    await _ensure_replays_topic(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in todo:
            await producer.send_and_wait(
                letter.source_topic,
                value=letter.value,
                key=letter.key,
                headers=letter.replay_headers(),
            )
            await producer.send_and_wait(REPLAYS_TOPIC, value=b"1", key=letter.name.encode())
            progress(letter)
    finally:
        await producer.stop()
    return ReplayOutcome(todo, skipped)
