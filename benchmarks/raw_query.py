"""The query stage's baseline: an AsyncMongoClient loop doing the query service's finds.

The same detail lookups and list pages (filter, projection, sort, limit) in the same
alternation, at the same concurrency and pool size as the service behind wrk, with no HTTP.

    python -m benchmarks.raw_query --mongodb-url U --database D --work FILE --seconds S -c N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvloop
from pymongo import ASCENDING, AsyncMongoClient

from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
)
from catalog_contracts.read_models import generation_from_pointer as pointer_to_generation

POOL = 50  # QUERY_MAX_POOL_SIZE default
LIST_PROJECTION = {"_id": 1, "name": 1, "price": 1, "in_stock": 1, "category": 1}
LIST_PROJECTION |= {"price_cents": 1, "updated_at": 1}


async def run(
    url: str, database: str, work: dict[str, Any], seconds: float, concurrency: int
) -> dict[str, Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, maxPoolSize=POOL, tz_aware=True
    )
    db = client[database]
    generation = pointer_to_generation(
        await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
    )
    detail = db[generation.collection(PRODUCT_DETAIL_COLLECTION)]
    listed = db[generation.collection(PRODUCT_LIST_COLLECTION)]
    ids: list[str] = work["ids"]
    lists: list[dict[str, Any]] = work["lists"]
    latencies: list[float] = []
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < deadline:
            counter += 1
            started = time.perf_counter()
            if counter % 2:
                await detail.find_one({"_id": ids[counter % len(ids)]})
            else:
                spec = lists[counter % len(lists)]
                found = (
                    listed.find(spec["filter"], LIST_PROJECTION)
                    .sort([(spec["sort"], spec["direction"]), ("_id", ASCENDING)])
                    .limit(spec["limit"] + 1)
                )
                _ = [doc async for doc in found]
            latencies.append(time.perf_counter() - started)

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mongodb-url", required=True)
    parser.add_argument("--database", default="catalog")
    parser.add_argument("--work", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    args = parser.parse_args()
    with open(args.work) as source:
        work = json.load(source)
    result = uvloop.run(run(args.mongodb_url, args.database, work, args.seconds, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
