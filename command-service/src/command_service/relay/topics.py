"""Creation of the events topic (compacted) and its dead-letter topic, where no operator does it."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600 * 1000


async def ensure_topics(
    bootstrap_servers: str,
    topic: str,
    *,
    partitions: int,
    min_compaction_lag_ms: int,
    replication_factor: int = 1,
) -> list[str]:
    """Create the events topic and `<topic>.dlq` if missing; return the names created."""
    wanted = [
        NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs={
                "cleanup.policy": "compact",
                # Recent history stays readable in full; older versions of a key compact away.
                "min.compaction.lag.ms": str(min_compaction_lag_ms),
                "min.insync.replicas": "1" if replication_factor == 1 else "2",
            },
        ),
        NewTopic(
            f"{topic}.dlq",
            num_partitions=1,
            replication_factor=replication_factor,
            topic_configs={
                "cleanup.policy": "delete",
                "retention.ms": str(DEAD_LETTER_RETENTION_MS),
            },
        ),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()
