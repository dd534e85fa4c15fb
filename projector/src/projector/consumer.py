"""The projector's consumer loop: read a batch, apply it to MongoDB, then commit its offsets.

One consumer group reads both topics (products and reviews). What one poll returns is split by
partition number (partition i of both topics: one product's two streams), and those batches
are applied side by side, at most `partition_concurrency` at a time, each one's events in
order; each batch's offsets are committed once its own writes are done, so one slow partition
delays only itself. Offsets are committed only after the batch is in MongoDB, so a crash at any
point redelivers what may not have been applied; the version guards make the redelivery change
nothing, whatever the order of the two topics.

Two kinds of failure are told apart. A store or dead-letter outage (`ReadModelUnavailable`,
`KafkaError`) is retried for as long as it lasts, without skipping anything. Anything else an
event's application raises is the event's own problem: the batch is tried `poison_attempts`
times, then event by event, and an event that still fails as often is dead-lettered with the
reason `apply-failed` and the error, so its partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from catalog_contracts.codec import EventDecodeError, decode_event
from catalog_contracts.events import CatalogEvent
from catalog_read_models.projection import Projection
from catalog_read_models.registry import ApplyResult
from catalog_read_models.store import ReadModelUnavailable
from projector.metrics import ProjectorMetrics
from projector.tracing import applying
from service_runtime.faults import PROJECTOR_AFTER_APPLY, crash_point, raise_injected_failure
from service_runtime.retry import Backoff, RetryStopped

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


def dead_letter_topic(source: str) -> str:
    """The dead-letter topic of a source topic."""
    return f"{source}.dlq"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer loop batches, waits and refreshes categories."""

    batch_size: int = 1000
    poll_timeout_ms: int = 200
    max_backoff: float = 10.0
    stall_check_seconds: float = 5.0
    stall_seconds: float = 30.0
    category_refresh_seconds: float = 1.0
    category_refresh_share: float = 0.25
    poison_attempts: int = 3  # tries of an event that fails to apply, before it is dead-lettered
    poison_first_wait: float = 0.2
    partition_concurrency: int = 6  # partitions' batches applied at the same time


def refresh_pause(took: float, minimum: float, share: float) -> float:
    """The wait before the next category refresh: at least `minimum`, and long enough that
    refreshes taking `took` seconds each fill at most `share` of the time, but never more than
    ten intervals (a refresh slowed by an outage must not leave categories stale for long)."""
    return min(max(minimum, took * (1 - share) / share), 10 * minimum)


# A store or dead-letter outage: the batch is retried as a whole and its offsets stay
# uncommitted, so nothing is skipped however long the outage lasts.
BATCH_RETRY = Backoff(
    "applying a batch (offsets not committed)",
    retry_on=(ReadModelUnavailable, KafkaError),
    first_wait=0.2,
)


TRANSIENT = (ReadModelUnavailable, KafkaError)


def fault_keys(events: list[CatalogEvent]) -> set[str]:
    """What a test may poison (service_runtime.faults): aggregate ids, product categories."""
    keys = {str(event.aggregate_id) for event in events}
    keys.update(event.state.category for event in events if event.aggregate_type == "product")
    return keys


class ProjectorStalled(Exception):
    """Messages are waiting and none arrive: this consumer should be replaced."""


class _StillFailing(Exception):
    """Events failed to apply `poison_attempts` times with the store answering."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message is dead-lettered."""

    reason: str
    detail: str


Message: TypeAlias = "ConsumerRecord[bytes, bytes]"


@dataclass
class Batch:
    events: list[CatalogEvent] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # each event's message, in order
    poison: list[tuple[Message, Failure]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class Projector:
    """Consumes the products' and reviews' topics into the read models."""

    def __init__(
        self,
        config: ConsumerConfig,
        consumer: AIOKafkaConsumer,
        dead_letters: AIOKafkaProducer,
        projection: Projection,
        metrics: ProjectorMetrics,
    ) -> None:
        self._config = config
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._projection = projection
        self._metrics = metrics
        self._batch_retry = replace(BATCH_RETRY, max_wait=config.max_backoff)
        self._commits = asyncio.Lock()  # one offset commit at a time on the consumer

    async def run(self, stop: asyncio.Event) -> None:
        """Project until `stop` is set; the batch in hand is finished and committed first.

        Category figures are refreshed beside the batches, so a product's document never
        waits for the aggregation of its whole category.
        """
        refresher = asyncio.create_task(self._refresh_categories(stop))
        try:
            await self._consume(stop)
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

    async def _refresh_categories(self, stop: asyncio.Event) -> None:
        share = self._config.category_refresh_share
        pause = self._config.category_refresh_seconds
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            started = time.perf_counter()
            pause = self._config.category_refresh_seconds
            try:
                if folded := await self._projection.refresh_categories():
                    took = time.perf_counter() - started
                    self._metrics.category_refresh_seconds.observe(took)
                    self._metrics.category_changes_folded.inc(folded)
                    pause = refresh_pause(took, pause, share)
                staleness = await self._projection.categories_staleness()
                self._metrics.categories_staleness.set(staleness)
            except ReadModelUnavailable as exc:
                log.warning("category refresh failed (%s); the changes wait for the next", exc)

    async def _consume(self, stop: asyncio.Event) -> None:
        progress = time.monotonic()
        last_check = progress
        while not stop.is_set():
            records = await self._consumer.getmany(
                timeout_ms=self._config.poll_timeout_ms, max_records=self._config.batch_size
            )
            now = time.monotonic()
            if not records:
                await self._report_lag()
                if now - last_check >= self._config.stall_check_seconds:
                    last_check = now
                    if not await self._behind():
                        progress = now
                    elif now - progress >= self._config.stall_seconds:
                        # Seen with consumers across broker restarts: messages wait, none come.
                        # Exiting hands the partitions to a fresh consumer (the supervisor or the
                        # kubelet restarts this one); nothing is lost, offsets were not committed.
                        raise ProjectorStalled(f"no message for {now - progress:.0f}s while behind")
                continue
            progress = now
            if not await self._process_partitions(records, stop):
                return
            await self._report_lag()

    async def _process_partitions(
        self, records: dict[TopicPartition, list[Message]], stop: asyncio.Event
    ) -> bool:
        """Apply and commit each partition number's batch, several at once; False if stopped
        before every one was applied (the others are committed, the rest come again)."""
        by_partition: dict[int, dict[TopicPartition, list[Message]]] = {}
        for tp, messages in records.items():
            by_partition.setdefault(tp.partition, {})[tp] = messages
        slots = asyncio.Semaphore(self._config.partition_concurrency)

        async def one(batch: Batch) -> bool:
            async with slots:
                if not await self._process(batch, stop):
                    return False
                crash_point(PROJECTOR_AFTER_APPLY)
                await self._commit(batch)
                return True

        async with asyncio.TaskGroup() as group:  # one failing stops the others
            done = [group.create_task(one(self._decode(part))) for part in by_partition.values()]
        return all(task.result() for task in done)

    def _decode(self, records: dict[TopicPartition, list[Message]]) -> Batch:
        batch = Batch()
        for tp, messages in records.items():
            for message in messages:
                try:
                    batch.events.append(decode_event(message.value))
                    batch.messages.append(message)
                except EventDecodeError as exc:
                    batch.poison.append((message, Failure(exc.reason, exc.detail)))
            batch.offsets[tp] = messages[-1].offset + 1
        return batch

    async def _process(self, batch: Batch, stop: asyncio.Event) -> bool:
        """Apply a batch, retrying outages and dead-lettering what keeps failing on its own;
        False if stopped before it was applied."""
        try:
            await self._transient(self._dead_letter, batch.poison, stop=stop)
            batch.poison = []
            started = time.perf_counter()
            with applying(batch.messages, batch.events):
                result = await self._apply_or_isolate(batch, stop)
            self._metrics.batch_seconds.observe(time.perf_counter() - started)
        except RetryStopped:
            return False
        now = datetime.now(UTC)
        self._metrics.batch_size.observe(len(batch.events))
        for event in batch.events:
            self._metrics.events.labels(event.event_type).inc()
            self._metrics.commit_to_view.observe(
                max(0.0, (now - event.occurred_at).total_seconds())
            )
        for event_type, count in result.applied.items():
            self._metrics.applied.labels(event_type).inc(count)
        for event_type, count in result.skipped.items():
            self._metrics.skipped.labels(event_type).inc(count)
        return True

    async def _apply_or_isolate(self, batch: Batch, stop: asyncio.Event) -> ApplyResult:
        """Apply the batch; if it keeps failing, apply its events one at a time and
        dead-letter the ones that keep failing on their own."""
        try:
            return await self._apply_with_attempts(batch.events, stop)
        except _StillFailing:
            # One of the events fails whatever the store does: find it by applying them one at
            # a time, in order (the version guards make the re-application of the others
            # harmless).
            result = ApplyResult()
            for message, event in zip(batch.messages, batch.events, strict=True):
                try:
                    one = await self._apply_with_attempts([event], stop)
                    result.applied.update(one.applied)
                    result.skipped.update(one.skipped)
                except _StillFailing as failing:
                    failure = Failure("apply-failed", failing.detail)
                    await self._transient(self._dead_letter, [(message, failure)], stop=stop)
            return result

    async def _apply_with_attempts(
        self, events: list[CatalogEvent], stop: asyncio.Event
    ) -> ApplyResult:
        """Apply `events`: outages are retried until they end; any other error up to
        `poison_attempts` times (with backoff), then _StillFailing."""
        attempts = self._config.poison_attempts
        wait = self._config.poison_first_wait
        for attempt in range(1, attempts + 1):
            try:
                return await self._transient(self._apply, events, stop=stop)
            except (RetryStopped, asyncio.CancelledError):
                raise
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                self._metrics.retries.inc()
                if attempt == attempts:
                    raise _StillFailing(detail) from exc
                log.warning("applying %d events failed (%s), try %d", len(events), detail, attempt)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    raise RetryStopped(detail) from exc
                wait = min(wait * 2, self._config.max_backoff)
        raise AssertionError("unreachable")

    async def _apply(self, events: list[CatalogEvent]) -> ApplyResult:
        raise_injected_failure(fault_keys(events))
        return await self._projection.apply(events)

    async def _transient(
        self, step: Callable[[_T], Awaitable[_R]], argument: _T, *, stop: asyncio.Event
    ) -> _R:
        """`step(argument)`, retried through outages of the store or of Kafka."""
        return await self._batch_retry.call(
            lambda: step(argument),
            stop=stop,
            logger=log,
            on_retry=lambda _: self._metrics.retries.inc(),
        )

    async def _dead_letter(self, poison: list[tuple[Message, Failure]]) -> None:
        for message, error in poison:
            headers = [
                (name, value)
                for name, value in message.headers or ()
                if not name.startswith("dlq.")  # a replayed dead letter fails afresh
            ]
            headers += [
                ("dlq.error.reason", error.reason.encode()),
                ("dlq.error.detail", error.detail[:1000].encode()),
                ("dlq.source.topic", message.topic.encode()),
                ("dlq.source.partition", str(message.partition).encode()),
                ("dlq.source.offset", str(message.offset).encode()),
            ]
            await self._dead_letters.send_and_wait(
                dead_letter_topic(message.topic),
                value=message.value,
                key=message.key,
                headers=headers,
            )
            self._metrics.dead_lettered.labels(error.reason).inc()
            log.warning(
                "dead-lettered %s[%d]@%d: %s: %s",
                message.topic,
                message.partition,
                message.offset,
                error.reason,
                error.detail,
            )

    async def _commit(self, batch: Batch) -> None:
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in batch.offsets.items()}
        try:
            async with self._commits:
                await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced; the new owner re-reads from the last commit, harmlessly.
            log.warning("offset commit failed after a rebalance: %s", exc)

    async def _behind(self) -> bool:
        """Whether an assigned partition has messages this consumer has not read yet."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return True  # out of the group is as bad as stuck
        try:
            ends = await self._consumer.end_offsets(assigned)
            for tp in assigned:
                if ends[tp] > await self._consumer.position(tp):
                    return True
            return False
        except (KafkaError, AssertionError, TimeoutError):
            return False  # cannot tell now; the next check will

    async def _report_lag(self) -> None:
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                position = await self._consumer.position(tp)
                lag = max(0, highwater - position)
                self._metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
