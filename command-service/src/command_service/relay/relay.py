"""The outbox relay: publishes committed outbox rows to Kafka, in order, keyed by product id.

Each row goes to its aggregate type's topic (products' and reviews' events have one each), keyed
by the row's message key: the product id, for a review's events too.

Outbox rows belong to shards (a hash of the product id; see catalog_contracts.relay), and each
shard has one publisher at a time: the relay holding its PostgreSQL session advisory lock, on
the connection it reads and marks the outbox with, so losing that connection also ends its hold.
Running relays share the shards: every second each one counts the running relays, gives back
what it holds beyond its fair share (between batches, so nothing of those shards is in flight)
and takes free shards up to it; a relay that dies loses its shards with its session, and the
others take them within a second or two. A hand-over may republish a row the dead relay sent
and had not marked, never reorder: a product's rows are all in one shard.

A relay selects what is still unpublished in its shards (not "id > last published": outbox
ids are not commit order), and marks rows only after Kafka acknowledged every message of the
batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from catalog_contracts.relay import (
    RELAY_LOCK_KEY,
    RELAYS_SQL,
    SHARD_HOLDERS_SQL,
    SHARD_LOCK_CLASS,
    shard_ranges,
)
from command_service.adapters.postgres import OUTBOX_CHANNEL, init_connection
from service_runtime.faults import RELAY_AFTER_ACK, crash_point
from service_runtime.retry import Backoff, RetryStopped
from service_runtime.telemetry import context_of, traceparent_of, tracing_enabled

T = TypeVar("T")

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("command_service.relay")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    dsn: str
    # Each aggregate type's topic. Rows of a type not listed here are left unpublished and
    # reported (`outbox_unroutable_rows`), never dropped: a writer newer than this relay, or a
    # missing topic setting, must not lose events nor hold up the other types' rows.
    topics: Mapping[str, str]
    batch_size: int = 500
    poll_interval: float = 1.0
    use_notify: bool = True
    lock_retry: float = 1.0
    retention_seconds: int = 24 * 3600
    purge_interval: float = 60.0
    max_backoff: float = 10.0
    rebalance_interval: float = 1.0  # how often a relay re-counts the relays and its share


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "relay_events_published_total",
            "Outbox events acknowledged by Kafka",
            ["event_type", "topic"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "relay_batch_size",
            "Events per published batch",
            registry=registry,
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000),
        )
        self.commit_to_publish = Histogram(
            "relay_commit_to_publish_seconds",
            "Time from outbox insert to Kafka acknowledgement",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
        )
        self.leader = Gauge(
            "relay_is_leader", "1 while this relay holds at least one shard", registry=registry
        )
        self.shards_held = Gauge(
            "relay_shards_held", "Outbox shards this relay publishes", registry=registry
        )
        self.shards_total = Gauge(
            "relay_shards_total",
            "Outbox shards there are (0 until first connected, then the last count known)",
            registry=registry,
        )
        self.failures = Counter(
            "relay_failures_total",
            "Publishing cycles that failed and were retried",
            registry=registry,
        )
        self.backlog = Gauge(
            "outbox_backlog_rows", "Outbox rows not yet published", registry=registry
        )
        self.unroutable = Gauge(
            "outbox_unroutable_rows",
            "Unpublished outbox rows whose aggregate type has no topic configured",
            ["aggregate_type"],
            registry=registry,
        )
        self.oldest_age = Gauge(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox row",
            registry=registry,
        )
        self.purged = Counter(
            "relay_outbox_purged_total",
            "Published outbox rows deleted after retention",
            registry=registry,
        )


ProducerFactory = Callable[[], AIOKafkaProducer]


class RelayStalled(Exception):
    """Publishing kept failing; the relay starts over with a fresh producer and connection."""


# Losing the database or the lock's connection ends leadership; campaign again after a pause.
LEADERSHIP = Backoff(
    "relay cycle",
    retry_on=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, RelayStalled),
)
# Kafka unavailable or timing out: keep the lock and retry; five failures in a row start over.
# Database errors are not retried here: they end the cycle (and leadership) at once.
PUBLISHING = Backoff(
    "publishing",
    retry_on=(Exception,),
    never_on=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
    max_attempts=5,
)


class OutboxRelay:
    """Leader-elected publisher of the outbox table."""

    def __init__(
        self, config: RelayConfig, producer_factory: ProducerFactory, metrics: RelayMetrics
    ) -> None:
        self._config = config
        self._producer_factory = producer_factory
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._leadership = replace(LEADERSHIP, max_wait=config.max_backoff)
        self._publishing = replace(PUBLISHING, max_wait=config.max_backoff)
        self._unroutable: dict[str, int] = {}
        self._traced = tracing_enabled()
        self.shards: frozenset[int] = frozenset()  # the shards this relay publishes now

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign for leadership and publish while leader, until `stop` is set."""
        while not stop.is_set():
            try:
                led = await self._leadership.call(
                    lambda: self._lead(stop), stop=stop, logger=log, on_retry=self._failed
                )
            except RetryStopped:
                return
            if not led:
                await _wait(stop, self._config.lock_retry)

    def _failed(self, _error: BaseException) -> None:
        self._metrics.failures.inc()

    async def _lead(self, stop: asyncio.Event) -> bool:
        """Join the running relays and publish the shards this one holds, until stopped or its
        connection fails; False if a relay of an earlier release publishes alone."""
        conn: asyncpg.Connection = await asyncpg.connect(
            self._config.dsn, server_settings={"application_name": "catalog-relay"}
        )
        try:
            await init_connection(conn)
            if not await conn.fetchval("SELECT pg_try_advisory_lock_shared($1)", RELAY_LOCK_KEY):
                log.warning("a relay of an earlier release holds the outbox alone; waiting")
                return False
            shards = Shards(await conn.fetchval("SELECT outbox_shards()"))
            self._metrics.shards_total.set(shards.count)
            if self._config.use_notify:
                await conn.add_listener(OUTBOX_CHANNEL, self._notified)
            producer = self._producer_factory()
            housekeeping = asyncio.create_task(self._housekeeping(stop))
            try:
                await producer.start()
                await self._publish_loop(conn, producer, shards, stop)
            finally:
                housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await housekeeping
                with contextlib.suppress(Exception):
                    await producer.stop()
            return True
        finally:
            self.shards = frozenset()
            self._show_shards()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def _rebalance(self, conn: asyncpg.Connection, shards: Shards) -> None:
        """Hold this relay's fair share of the shards: give back any beyond it, take free ones
        up to it. Called between batches, so nothing of a shard given back is in flight."""
        relays = len(await conn.fetch(RELAYS_SQL, RELAY_LOCK_KEY))
        share = shards.share(relays)
        held = set(self.shards)
        for shard in sorted(held)[share:]:
            await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", SHARD_LOCK_CLASS, shard)
            held.discard(shard)
        if len(held) < share:
            taken = {row["shard"] for row in await conn.fetch(SHARD_HOLDERS_SQL, SHARD_LOCK_CLASS)}
            for shard in shards.free(taken):
                if len(held) >= share:
                    break
                if await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", SHARD_LOCK_CLASS, shard
                ):
                    held.add(shard)
        if held != self.shards:
            log.info(
                "relay publishes shards %s of %d (%d relay(s) running)",
                shard_ranges(held) or "none",
                shards.count,
                relays,
            )
            self.shards = frozenset(held)
            self._show_shards()

    def _show_shards(self) -> None:
        self._metrics.leader.set(1 if self.shards else 0)
        self._metrics.shards_held.set(len(self.shards))

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _publish_loop(
        self,
        conn: asyncpg.Connection,
        producer: AIOKafkaProducer,
        shards: Shards,
        stop: asyncio.Event,
    ) -> None:
        last_rebalance = 0.0
        while not stop.is_set():
            self._wake.clear()
            if time.monotonic() - last_rebalance >= self._config.rebalance_interval:
                await self._rebalance(conn, shards)
                last_rebalance = time.monotonic()
            if not self.shards:
                await self._idle(conn, stop)
                continue
            try:
                published = await self._publishing.call(
                    lambda: self.publish_backlog(conn, producer, shards=self.shards),
                    stop=stop,
                    logger=log,
                    on_retry=self._failed,
                )
            except RetryStopped:
                return
            except Exception as exc:
                if not self._publishing.retryable(exc):
                    raise
                # Start over with a new producer (and connection) rather than trust one that
                # has failed this often, e.g. across a broker restart.
                self._failed(exc)
                raise RelayStalled(
                    f"{PUBLISHING.max_attempts} publishing failures in a row"
                ) from exc
            if published < self._config.batch_size:
                await self._idle(conn, stop)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """The backlog gauges every second and, on the holder of shard 0, the purge, on a
        connection of their own: run between batches on the publishing connection, they held
        up every command committed meanwhile (a count over the backlog each second, a purge
        of thousands of rows each minute), which showed in the commit-to-topic p99. A failure
        here is logged and tried again a second later; publishing goes on."""
        conn: asyncpg.Connection | None = None
        last_purge = time.monotonic() - self._config.purge_interval
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(
                            self._config.dsn,
                            server_settings={"application_name": "catalog-relay-housekeeping"},
                        )
                    await self.observe_backlog(conn)
                    now = time.monotonic()
                    if 0 in self.shards and now - last_purge >= self._config.purge_interval:
                        last_purge = now
                        await self.purge(conn)  # one relay purges: the holder of shard 0
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("relay housekeeping failed (%s); again in a second", exc)
                await _wait(stop, 1.0)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)

    async def _idle(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if self._config.use_notify:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(
                waiters, timeout=self._config.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if conn.is_closed():
            raise asyncpg.InterfaceError("leadership connection closed")

    async def publish_backlog(
        self,
        conn: asyncpg.Connection,
        producer: AIOKafkaProducer,
        *,
        budget: float = 1.0,
        shards: Collection[int] | None = None,
    ) -> int:
        """Publish batch after batch of `shards` (None: every shard) for up to `budget`
        seconds; returns the rows published.

        PostgreSQL's part of a batch runs while this process and the broker do theirs: the next
        batch is read while Kafka acknowledges this one, and this one is marked while the next
        is handed to the producer and acknowledged. What keeps the order and the guarantee: a
        batch is sent only once every row before it is acknowledged (so the topic holds the rows
        in id order), and a row is marked only after Kafka acknowledged it (a crash in between
        republishes, never loses). The connection runs one statement at a time.
        """
        deadline = time.monotonic() + budget
        only = None if shards is None else sorted(shards)
        rows = await self._fetch(conn, [], only)
        if not rows:
            return 0
        acks = await self._send(producer, rows)
        total = 0
        while rows:
            following: list[asyncpg.Record] = []
            if len(rows) == self._config.batch_size and time.monotonic() < deadline:
                reading = await _started(self._fetch(conn, [row["id"] for row in rows], only))
                try:
                    await self._acknowledged(acks)
                finally:
                    following = await reading
            else:
                await self._acknowledged(acks)
            marking = await _started(self._mark(conn, rows))
            try:
                if following:
                    acks = await self._send(producer, following)
            finally:
                await marking
            total += len(rows)
            rows = following
        return total

    async def _fetch(
        self, conn: asyncpg.Connection, in_flight: list[int], shards: list[int] | None
    ) -> list[asyncpg.Record]:
        """The oldest unpublished rows of `shards` (None: all), leaving out those sent and not
        marked yet.

        Rows above the highest id in flight skip the (linear) array test; a row below it that
        is not in flight committed late and is still taken, in id order.
        """
        # Only the types this relay has a topic for: rows of another type must not fill every
        # batch and stop the rest (they wait, counted by observe_backlog, for a relay that knows
        # their topic). A row written before the message key existed is keyed by its aggregate.
        rows: list[asyncpg.Record] = await conn.fetch(
            """
            SELECT id, aggregate_type, coalesce(message_key, aggregate_id) AS message_key,
                   event_type, payload::text AS payload, headers, created_at
              FROM outbox
             WHERE published_at IS NULL AND aggregate_type = ANY($4::text[])
               AND (id > $3 OR id <> ALL($2::bigint[]))
               AND ($5::smallint[] IS NULL OR shard = ANY($5::smallint[]))
             ORDER BY id
             LIMIT $1
            """,
            self._config.batch_size,
            in_flight,
            max(in_flight, default=0),
            list(self._config.topics),
            shards,
        )
        return rows

    async def _send(
        self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]
    ) -> list[asyncio.Future[object]]:
        """Hand the rows to the producer in id order; the futures resolve on acknowledgement."""
        futures = []
        for row in rows:
            topic = self._config.topics[row["aggregate_type"]]
            headers = [(name, str(value).encode()) for name, value in row["headers"].items()]
            span = _publish_span(row, topic) if self._traced else None
            if span is not None:
                # The consumer continues the trace from this span, not from the command's.
                headers = [(name, value) for name, value in headers if name != "traceparent"]
                headers.append(("traceparent", str(traceparent_of(span)).encode()))
            future = await producer.send(
                topic,
                value=row["payload"].encode(),
                key=str(row["message_key"]).encode(),
                headers=headers,
            )
            if span is not None:
                future.add_done_callback(functools.partial(_end_publish_span, span))
            futures.append(future)
        return futures

    async def _acknowledged(self, acks: list[asyncio.Future[object]]) -> None:
        """Wait until Kafka acknowledged every row of a batch."""
        await asyncio.gather(*acks)
        crash_point(RELAY_AFTER_ACK)

    async def _mark(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
        """Mark an acknowledged batch published and count it."""
        await self._mark_published(conn, [row["id"] for row in rows])
        self._metrics.batch_size.observe(len(rows))
        now = time.time()
        published: collections.Counter[tuple[str, str]] = collections.Counter()
        for row in rows:
            published[row["event_type"], self._config.topics[row["aggregate_type"]]] += 1
            self._metrics.commit_to_publish.observe(max(0.0, now - row["created_at"].timestamp()))
        for (event_type, topic), count in published.items():
            self._metrics.published.labels(event_type, topic).inc(count)

    async def _mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        """Record that Kafka acknowledged these rows (a crash before this republishes them)."""
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", ids
        )

    async def observe_backlog(self, conn: asyncpg.Connection) -> None:
        """Unpublished rows and the age of the oldest, for alerting on a stuck relay.

        Rows of an aggregate type without a topic count too (so the backlog alerts fire), and
        per type in `outbox_unroutable_rows`, with an error logged when such a type appears.
        """
        rows = await conn.fetch(
            """
            SELECT aggregate_type, count(*) AS backlog,
                   extract(epoch FROM now() - min(created_at)) AS oldest
              FROM outbox WHERE published_at IS NULL
             GROUP BY aggregate_type
            """
        )
        self._metrics.backlog.set(sum(row["backlog"] for row in rows))
        self._metrics.oldest_age.set(max((float(row["oldest"]) for row in rows), default=0.0))
        unroutable = {
            row["aggregate_type"]: int(row["backlog"])
            for row in rows
            if row["aggregate_type"] not in self._config.topics
        }
        for aggregate_type in unroutable.keys() - self._unroutable.keys():
            log.error(
                "outbox rows of aggregate type %r have no topic (configured: %s); they stay "
                "unpublished until a relay has one",
                aggregate_type,
                _routes(self._config.topics),
            )
        for aggregate_type in self._unroutable.keys() | unroutable.keys():
            self._metrics.unroutable.labels(aggregate_type).set(unroutable.get(aggregate_type, 0))
        self._unroutable = unroutable

    async def purge(self, conn: asyncpg.Connection) -> int:
        """Delete published rows older than the retention period, in bounded chunks."""
        total = 0
        while True:
            status = await conn.execute(
                """
                DELETE FROM outbox WHERE id IN (
                    SELECT id FROM outbox
                     WHERE published_at IS NOT NULL
                       AND published_at < now() - make_interval(secs => $1)
                     LIMIT 5000)
                """,
                float(self._config.retention_seconds),
            )
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < 5000:
                break
        if total:
            self._metrics.purged.inc(total)
            log.info("purged %d published outbox rows", total)
        status = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")
        expired = int(status.split()[-1])
        if expired:
            log.info("purged %d expired idempotency keys", expired)
        return total


@dataclass(frozen=True, slots=True)
class Shards:
    """The outbox's shards, as the database counts them."""

    count: int

    def share(self, relays: int) -> int:
        """The most shards one of `relays` running relays holds: all of them shared fairly."""
        return -(-self.count // max(relays, 1))

    def free(self, taken: Collection[int]) -> list[int]:
        """The shards nobody holds."""
        return [shard for shard in range(self.count) if shard not in taken]


def _publish_span(row: asyncpg.Record, topic: str) -> Span | None:
    """The span of a row's publication: a child of the command that wrote the row (its
    `traceparent`), started now, with how long the row waited in the outbox."""
    parent = context_of(row["headers"].get("traceparent"))
    if parent is None:
        return None
    waited = max(0.0, time.time() - row["created_at"].timestamp())
    return TRACER.start_span(
        f"publish {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": str(row["message_key"]),
            "catalog.event_type": row["event_type"],
            "outbox.id": row["id"],
            "outbox.wait_ms": round(waited * 1000, 3),
        },
    )


def _end_publish_span(span: Span, sent: asyncio.Future[RecordMetadata]) -> None:
    """End a publication's span when Kafka acknowledges the message (or refuses it)."""
    if sent.cancelled():
        span.set_status(StatusCode.ERROR, "cancelled")
    elif (error := sent.exception()) is not None:
        span.record_exception(error)
        span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
    else:
        metadata = sent.result()
        span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
        span.set_attribute("messaging.kafka.offset", metadata.offset)
    span.end()


async def _started(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `work` as a task and let it reach its first wait (its statement is on the wire)."""
    task = asyncio.ensure_future(work)
    await asyncio.sleep(0)
    return task


def _routes(topics: Mapping[str, str]) -> str:
    return ", ".join(f"{aggregate_type} -> {topic}" for aggregate_type, topic in topics.items())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
