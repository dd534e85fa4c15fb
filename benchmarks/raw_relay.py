"""The relay stage's baseline: aiokafka producing the outbox's payloads, nothing else.

Reads the backlog's rows first (not timed), then sends them with the relay's producer settings
and batching: batches of the relay's batch size, each fully acknowledged before the next.
What is left between this and the relay is reading and marking the outbox in PostgreSQL.

    python -m benchmarks.raw_relay --dsn DSN --bootstrap HOST:PORT --topic T --first-id N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import asyncpg
import uvloop
from aiokafka import AIOKafkaProducer

BATCH = 500  # the relay's batch size (COMMAND_RELAY_BATCH_SIZE default)


async def run(dsn: str, bootstrap: str, topic: str, first_id: int) -> dict[str, Any]:
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id, payload::text AS payload, headers::text AS headers"
            " FROM outbox WHERE id >= $1 ORDER BY id",
            first_id,
        )
    finally:
        await conn.close()
    messages = [
        (
            str(r["aggregate_id"]).encode(),
            r["payload"].encode(),
            [(k, str(v).encode()) for k, v in json.loads(r["headers"]).items()],
        )
        for r in rows
    ]
    producer = AIOKafkaProducer(  # the relay's settings (command_service.relay.bootstrap)
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=512 * 1024,
        request_timeout_ms=15000,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for start in range(0, len(messages), BATCH):
            futures = [
                await producer.send(topic, value=value, key=key, headers=hdrs)
                for key, value, hdrs in messages[start : start + BATCH]
            ]
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"events": len(messages), "seconds": elapsed, "eps": len(messages) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--first-id", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args.dsn, args.bootstrap, args.topic, args.first_id))))


if __name__ == "__main__":
    main()
