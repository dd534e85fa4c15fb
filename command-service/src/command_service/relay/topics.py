"""Creation of the events topics (compacted) and their dead letters, where no operator does it."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from service_runtime.retry import Backoff

log = logging.getLogger(__name__)

DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600 * 1000


class TopicLayoutError(RuntimeError):
    """The events topics that exist do not share one partition count."""


async def ensure_topics(
    bootstrap_servers: str,
    *topics: str,
    partitions: int,
    min_compaction_lag_ms: int,
    replication_factor: int = 1,
) -> list[str]:
    """Create each events topic and its `<topic>.dlq` if missing; return the names created.

    The events topics are co-partitioned: one key (the product id) lands on the same partition
    number in each, which the projector relies on. A topic added later (the reviews' beside an
    existing products topic) therefore gets the partition count of those that exist.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        events = list(dict.fromkeys(topics))
        count = await _partition_count(
            admin, [topic for topic in events if topic in existing], partitions
        )
        wanted = [
            *(
                _events_topic(topic, count, replication_factor, min_compaction_lag_ms)
                for topic in events
            ),
            *(_dead_letter_topic(f"{topic}.dlq", replication_factor) for topic in events),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()


class TopicMetadataPending(Exception):
    """A topic created a moment ago whose partitions the broker does not report yet."""


# A topic just created (by another replica, or by an operator a moment ago) is briefly
# described with no partitions; it is not a layout to compare.
TOPIC_METADATA = Backoff(
    "reading the events topics' metadata",
    retry_on=(TopicMetadataPending,),
    first_wait=0.1,
    max_wait=1.0,
    max_attempts=20,
)


async def _partition_count(admin: AIOKafkaAdminClient, existing: list[str], configured: int) -> int:
    """The partition count every events topic must have: that of the ones that exist, if any."""
    if not existing:
        return configured

    async def described() -> dict[str, int]:
        counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(existing)}
        if 0 in counts.values() or set(counts) != set(existing):
            raise TopicMetadataPending(f"partitions not known yet: {counts}")
        return counts

    counts = await TOPIC_METADATA.call(described, logger=log)
    if len(set(counts.values())) != 1:
        raise TopicLayoutError(f"the events topics differ in partition count: {counts}")
    (count,) = set(counts.values())
    if count != configured:
        log.warning(
            "the events topics have %d partitions, not the configured %d; new ones get %d",
            count,
            configured,
            count,
        )
    return count


def _events_topic(
    name: str, partitions: int, replication_factor: int, min_compaction_lag_ms: int
) -> NewTopic:
    return NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        topic_configs={
            "cleanup.policy": "compact",
            # Recent history stays readable in full; older versions of a key compact away.
            "min.compaction.lag.ms": str(min_compaction_lag_ms),
            "min.insync.replicas": "1" if replication_factor == 1 else "2",
        },
    )


def _dead_letter_topic(name: str, replication_factor: int) -> NewTopic:
    return NewTopic(
        name,
        num_partitions=1,
        replication_factor=replication_factor,
        topic_configs={
            "cleanup.policy": "delete",
            "retention.ms": str(DEAD_LETTER_RETENTION_MS),
        },
    )
