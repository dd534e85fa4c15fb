"""Quick figures against a running local stack (`make up`): create rate, projector backlog rate,
commit-to-view latency. Not the full `make bench` harness; a first measurement of each stage."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from catalog_contracts.codec import encode_event
from catalog_contracts.events import ProductCreated, ProductCreatedData, ProductState

REPO = Path(__file__).resolve().parents[1]


def stack_env() -> dict[str, str]:
    path = Path(os.environ.get("STACK_DIR", REPO / ".run")) / "stack.env"
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def create_rate(gateway: str, seconds: float, concurrency: int) -> None:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    category = f"bench-{uuid.uuid4().hex[:6]}"

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            r = await client.post(
                "/api/v1/products",
                json={"name": "bench", "category": category, "price": "9.99", "stock": 5},
            )
            if r.status_code == 201:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(
        f"creates through the gateway: {len(latencies) / elapsed:,.0f}/s at concurrency "
        f"{concurrency}; p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms; errors {errors}"
    )


async def commit_to_view(gateway: str, samples: int) -> None:
    delays = []
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        for _ in range(samples):
            r = await client.post(
                "/api/v1/products",
                json={"name": "latency", "category": "bench-latency", "price": "1.00", "stock": 1},
            )
            acknowledged = time.perf_counter()
            pid = r.json()["id"]
            while (await client.get(f"/api/v1/products/{pid}")).status_code != 200:
                await asyncio.sleep(0.001)
            delays.append(time.perf_counter() - acknowledged)
            await asyncio.sleep(0.02)
    print(
        f"command response -> readable through the query API ({samples} samples): "
        f"p50 {percentile(delays, 0.5) * 1000:.1f} ms, p99 {percentile(delays, 0.99) * 1000:.1f} ms"
    )


async def projector_backlog(env: dict[str, str], events: int) -> None:
    stackctl = [str(REPO / "deploy/local/stackctl")]
    subprocess.run([*stackctl, "stop", "projector"], check=True, capture_output=True)
    producer = AIOKafkaProducer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    now = datetime.now(UTC)
    category = f"backlog-{uuid.uuid4().hex[:6]}"
    try:
        for i in range(events):
            pid = uuid.uuid4()
            state = ProductState(
                id=pid,
                name=f"b{i}",
                description=None,
                category=category,
                price=Decimal("1.00"),
                stock=1,
                status="active",
                created_at=now,
                updated_at=now,
                version=1,
            )
            event = ProductCreated(
                event_id=uuid.uuid4(),
                schema_version=1,
                aggregate_id=pid,
                aggregate_version=1,
                occurred_at=now,
                state=state,
                data=ProductCreatedData(
                    name=state.name, description=None, category=category, price=state.price, stock=1
                ),
            )
            await producer.send(
                env["EVENTS_TOPIC"], key=str(pid).encode(), value=encode_event(event)
            )
        await producer.flush()
    finally:
        await producer.stop()
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(env["MONGODB_URL"])
    products = mongo["catalog"]["products"]
    started = time.perf_counter()
    subprocess.run([*stackctl, "start", "projector"], check=True, capture_output=True)
    while await products.count_documents({"category": category}) < events:
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - started
    await mongo.close()
    print(
        f"projector applied a backlog of {events:,} events in {elapsed:.1f}s: "
        f"{events / elapsed:,.0f} events/s (including its restart)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=50_000)
    args = parser.parse_args()
    env = stack_env()
    asyncio.run(create_rate(env["GATEWAY_URL"], args.seconds, args.concurrency))
    asyncio.run(commit_to_view(env["GATEWAY_URL"], args.latency_samples))
    if args.backlog:
        asyncio.run(projector_backlog(env, args.backlog))


if __name__ == "__main__":
    main()
