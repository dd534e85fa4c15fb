"""The projector stage's baseline: PyMongo async writing the same upserts, nothing else.

Reads and decodes the whole backlog first (not timed), then, per batch of the projector's batch
size, keeps each product's newest state (the projector does the same) and writes version-guarded
upserts to both product read models (`product_list` and `product_detail`, one document
each), as one unordered `bulk_write` per batch and collection, on MongoDB and DocumentDB
alike, into collections with the read models' own indexes.

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
from pymongo.errors import BulkWriteError

from benchmarks.kafka import partitions as topic_partitions
from catalog_contracts.read_models import PRODUCT_DETAIL_COLLECTION, PRODUCT_LIST_COLLECTION
from catalog_read_models import product_detail, product_list

BATCH = 1000  # PROJECTOR_BATCH_SIZE default
DUPLICATE_KEY = 11000


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


async def write(
    products: AsyncCollection[dict[str, Any]], operations: list[ReplaceOne[dict[str, Any]]]
) -> None:
    """One unordered bulk; a guard that did not match collides on `_id` (the newer stays)."""
    try:
        await products.bulk_write(operations, ordered=False)
    except BulkWriteError as exc:
        if any(error["code"] != DUPLICATE_KEY for error in exc.details["writeErrors"]):
            raise


async def run(bootstrap: str, topic: str, url: str, database: str) -> dict[str, Any]:
    states = await read_topic(bootstrap, topic)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        collections = [
            client[database][PRODUCT_LIST_COLLECTION],
            client[database][PRODUCT_DETAIL_COLLECTION],
        ]
        # The read models' own indexes, as the projector writes through them: every write
        # maintains them (on DocumentDB most of a write's cost), so a baseline without them
        # would compare writes of different work.
        for products, indexes in zip(
            collections, (product_list.INDEXES, product_detail.INDEXES), strict=True
        ):
            await products.create_indexes(list(indexes))
        started = time.perf_counter()
        for start in range(0, len(states), BATCH):
            newest: dict[str, dict[str, Any]] = {}
            for state in states[start : start + BATCH]:
                kept = newest.get(state["id"])
                if kept is None or kept["version"] < state["version"]:
                    newest[state["id"]] = state
            documents = [document(s) for s in newest.values()]
            operations = [
                ReplaceOne({"_id": d["_id"], "version": {"$lt": d["version"]}}, d, upsert=True)
                for d in documents
            ]
            for products in collections:
                await write(products, operations)
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
