"""The projector stage's baseline: PyMongo async writing the same upserts, nothing else.

Reads and decodes the whole backlog first (not timed), then, per batch of the projector's batch
size, keeps each product's newest state (the projector does the same) and writes version-guarded
upserts to both product read models (`product_list` and `product_detail`, one document
each). On MongoDB that is one unordered `bulk_write` per batch. FerretDB v1 runs a bulk of
matched updates at a few dozen per second and fails some outright, so there the baseline sends
the same upserts one by one, 16 in flight (the projector's concurrency): the fastest way that
server takes them, and the projector's way on it.

    python -m benchmarks.raw_projector --bootstrap B --topic T --mongodb-url U --database D
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from decimal import Decimal
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection

from benchmarks.kafka import partitions as topic_partitions
from catalog_contracts.read_models import PRODUCT_DETAIL_COLLECTION, PRODUCT_LIST_COLLECTION

BATCH = 1000  # PROJECTOR_BATCH_SIZE default
CONCURRENCY = 16  # the projector's writer concurrency on FerretDB


async def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} has no partitions")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        states: list[dict[str, Any]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            for messages in batches.values():
                states.extend(orjson.loads(m.value)["state"] for m in messages)
        return states
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def document(state: dict[str, Any]) -> dict[str, Any]:
    """catalog_contracts.read_models.product_document, from the event's JSON."""
    return {
        "_id": state["id"],
        "name": state["name"],
        "description": state["description"],
        "category": state["category"],
        "price": state["price"],
        "price_cents": int(Decimal(state["price"]) * 100),
        "stock": state["stock"],
        "in_stock": state["stock"] > 0,
        "status": state["status"],
        "version": state["version"],
        "created_at": state["created_at"],
        "updated_at": state["updated_at"],
    }


async def write_one_by_one(products: AsyncCollection[Any], documents: list[dict[str, Any]]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def write(doc: dict[str, Any]) -> None:
        async with limit:
            guard = {"_id": doc["_id"], "version": {"$lt": doc["version"]}}
            await products.replace_one(guard, doc, upsert=True)

    await asyncio.gather(*(write(d) for d in documents))


async def run(bootstrap: str, topic: str, url: str, database: str) -> dict[str, Any]:
    states = await read_topic(bootstrap, topic)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        ferretdb = "ferretdbVersion" in await client.admin.command("buildInfo")
        collections = [
            client[database][PRODUCT_LIST_COLLECTION],
            client[database][PRODUCT_DETAIL_COLLECTION],
        ]
        started = time.perf_counter()
        for start in range(0, len(states), BATCH):
            newest: dict[str, dict[str, Any]] = {}
            for state in states[start : start + BATCH]:
                kept = newest.get(state["id"])
                if kept is None or kept["version"] < state["version"]:
                    newest[state["id"]] = state
            documents = [document(s) for s in newest.values()]
            for products in collections:
                if ferretdb:
                    await write_one_by_one(products, documents)
                else:
                    operations = [
                        ReplaceOne(
                            {"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True
                        )
                        for d in documents
                    ]
                    await products.bulk_write(operations, ordered=False)
        elapsed = time.perf_counter() - started
        await client.drop_database(database)
    finally:
        await client.close()
    return {"events": len(states), "seconds": elapsed, "eps": len(states) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mongodb-url", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    result = uvloop.run(run(args.bootstrap, args.topic, args.mongodb_url, args.database))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
