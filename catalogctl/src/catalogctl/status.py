"""`catalogctl status`: where the pipeline stands, from the servers and the services' metrics.

- the running relays and the outbox shards each one publishes (their advisory locks);
- the outbox backlog and the age of its oldest unpublished row;
- the projector group's lag per topic and partition (end offset minus committed offset);
- dead letters per dead-letter topic;
- categories staleness and commit-to-view p50/p99, from the projector's /metrics (the
  quantiles estimated from the histogram's buckets, as Prometheus's histogram_quantile does).
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from catalog_contracts.relay import RELAY_LOCK_KEY, RELAYS_SQL, SHARD_HOLDERS_SQL, SHARD_LOCK_CLASS
from catalogctl.dlq import dead_letter_topic, partitions_of


async def relays(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The running relays (sessions holding the relays' shared lock) and the outbox shards
    each one publishes (catalog_contracts.relay)."""
    running = {row["pid"] for row in await conn.fetch(RELAYS_SQL, RELAY_LOCK_KEY)}
    shards: dict[int, list[int]] = {pid: [] for pid in running}
    for row in await conn.fetch(SHARD_HOLDERS_SQL, SHARD_LOCK_CLASS):
        shards.setdefault(row["pid"], []).append(row["shard"])
    if not shards:
        return []
    rows = await conn.fetch(
        """
        SELECT pid, application_name, client_addr::text AS client,
               extract(epoch FROM now() - backend_start) AS connected_seconds
          FROM pg_stat_activity WHERE pid = ANY($1::int[])
        """,
        list(shards),
    )
    return [
        {
            "pid": row["pid"],
            "application_name": row["application_name"],
            "client": row["client"],
            "connected_seconds": round(float(row["connected_seconds"]), 1),
            "shards": sorted(shards[row["pid"]]),
        }
        for row in sorted(rows, key=lambda row: min(shards[row["pid"]], default=1 << 16))
    ]


async def outbox(conn: asyncpg.Connection) -> dict[str, Any]:
    """Unpublished rows and the age of the oldest."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS backlog,
               coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest
          FROM outbox WHERE published_at IS NULL
        """
    )
    assert row is not None
    return {"backlog": int(row["backlog"]), "oldest_age_seconds": round(float(row["oldest"]), 3)}


async def kafka_figures(
    bootstrap: str, topics: tuple[str, ...], group: str
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The group's lag per topic and partition, and the dead letters per dead-letter topic."""
    dead = [dead_letter_topic(topic) for topic in topics]
    partitions = await partitions_of(bootstrap, [*topics, *dead])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        every = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        ends = await consumer.end_offsets(every) if every else {}
        firsts = await consumer.beginning_offsets(every) if every else {}
    finally:
        await consumer.stop()
        await admin.close()
    lag = []
    for topic in topics:
        for partition in partitions[topic]:
            tp = TopicPartition(topic, partition)
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else None
            lag.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "end_offset": ends[tp],
                    "committed_offset": offset,
                    "lag": ends[tp] - (offset if offset is not None else firsts[tp]),
                }
            )
    letters = {
        topic: sum(
            ends[TopicPartition(topic, p)] - firsts[TopicPartition(topic, p)]
            for p in partitions[topic]
        )
        for topic in dead
    }
    return lag, letters


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative (upper bound, count) buckets, interpolated linearly."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1)
        lower, below = bound, count
    return None


def _scrape(url: str, timeout: float) -> tuple[float | None, list[tuple[float, float]]]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    staleness: float | None = None
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "projector_categories_staleness_seconds":
                staleness = sample.value
            elif sample.name == "projector_commit_to_view_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
    return staleness, buckets


def commit_to_view_buckets(url: str, timeout: float = 5.0) -> list[tuple[float, float]]:
    """The projector's commit-to-view histogram now: cumulative (upper bound, count) buckets."""
    return _scrape(url, timeout)[1]


def projector_metrics(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Categories staleness and commit-to-view quantiles from the projector's /metrics."""
    staleness, buckets = _scrape(url, timeout)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    return {
        "categories_staleness_seconds": staleness,
        "commit_to_view_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "commit_to_view_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
        "commit_to_view_samples": int(max((c for _, c in buckets), default=0)),
    }


async def status(
    database_url: str,
    bootstrap: str,
    topics: tuple[str, ...],
    group: str,
    projector_metrics_url: str | None,
) -> dict[str, Any]:
    """Every figure of `catalogctl status`."""
    conn = await asyncpg.connect(database_url)
    try:
        leaders, backlog = await relays(conn), await outbox(conn)
        total = int(await conn.fetchval("SELECT outbox_shards()"))
    finally:
        await conn.close()
    lag, letters = await kafka_figures(bootstrap, topics, group)
    figures: dict[str, Any] = {
        "relays": leaders,
        "shards": {
            "total": total,
            "without_relay": sorted(
                set(range(total)) - {shard for relay in leaders for shard in relay["shards"]}
            ),
        },
        "outbox": backlog,
        "consumer_lag": lag,
        "dead_letters": letters,
    }
    figures["projector"] = None
    if projector_metrics_url:
        try:
            figures["projector"] = await asyncio.to_thread(projector_metrics, projector_metrics_url)
        except OSError as exc:  # the projector is down: say so, report the rest
            figures["projector"] = {"error": f"{projector_metrics_url}: {exc}"}
    return figures
