"""The relay never loses an event: failover, late commits, crashes before marking, Kafka outages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from uuid import uuid4

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from catalog_contracts.codec import decode_event
from command_service.adapters.postgres import UnitOfWork, UnitOfWorkFactory
from command_service.domain.model import Product
from command_service.handlers import CommandHandlers, CreateProduct, RequestContext
from command_service.relay.bootstrap import build_relay
from command_service.relay.relay import OutboxRelay
from command_service.settings import CommandSettings
from tests.fixtures.infra import Infra
from tests.integration.test_relay import consume, running_relay

pytestmark = pytest.mark.integration


def product(name: str) -> CreateProduct:
    return CreateProduct(name=name, description=None, category="c", price="1.00", stock=1)


async def create(pool: asyncpg.Pool, name: str) -> str:
    result = await CommandHandlers(UnitOfWorkFactory(pool)).create_product(
        product(name), RequestContext()
    )
    return str(result.outcome.aggregate_id)


def names_on(records: list) -> list[str]:  # type: ignore[type-arg]
    return [decode_event(r.value).state.name for r in records]


async def names_arrive(infra: Infra, topic: str, wanted: set[str], seconds: float) -> set[str]:
    """The product names on the topic once all of `wanted` are there (or time is up)."""
    deadline = asyncio.get_running_loop().time() + seconds
    seen: set[str] = set()
    while not wanted <= seen and asyncio.get_running_loop().time() < deadline:
        seen = set(names_on(await consume(infra, topic, 10_000, seconds=3)))
    return seen


async def test_a_transaction_that_commits_late_still_gets_published(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    late = UnitOfWork(pg_pool)
    await late.__aenter__()
    try:
        # The late row takes an outbox id below every row committed after it.
        product_late, pending = Product.create(
            product_id=uuid4(),
            name="late",
            description=None,
            category="c",
            price="1",
            stock=1,
            now=__import__("datetime").datetime.now(__import__("datetime").UTC),
        )
        await late.products.add(product_late)
        await late.outbox.append(handlers._envelope(product_late, pending, RequestContext()))
        async with running_relay(infra, database_url, topic):
            for i in range(3):
                await create(pg_pool, f"early-{i}")
            assert sorted(names_on(await consume(infra, topic, 3))) == [
                "early-0",
                "early-1",
                "early-2",
            ]
            await asyncio.sleep(1.0)  # several relay polls pass while it is still open
            await late.__aexit__(None, None, None)
            records = await consume(infra, topic, 4)
        assert "late" in names_on(records)
    finally:
        if late._conn is not None:
            await late.__aexit__(RuntimeError, RuntimeError(), None)


class CrashBeforeMark(OutboxRelay):
    """A relay that dies after Kafka acknowledged a batch and before it marked the rows."""

    async def _mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        raise asyncio.CancelledError  # as abrupt as a kill: no except clause handles it


async def test_a_relay_killed_between_send_and_mark_republishes(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    await create(pg_pool, "once")
    settings = CommandSettings(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
        EVENTS_TOPIC=topic,
    )
    normal = build_relay(settings, CollectorRegistry())
    crashing = CrashBeforeMark(normal._config, normal._producer_factory, normal._metrics)
    with pytest.raises(asyncio.CancelledError):
        await crashing.run(asyncio.Event())
    assert names_on(await consume(infra, topic, 1)) == ["once"]
    async with running_relay(infra, database_url, topic):
        records = await consume(infra, topic, 2)
    assert names_on(records) == ["once", "once"]  # at least once; the projector dedupes
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def relay_process(
    infra: Infra, database_url: str, topic: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "EVENTS_TOPIC": topic,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "COMMAND_RELAY_METRICS_PORT": str(port),
        "COMMAND_RELAY_LOCK_RETRY_SECONDS": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "command_service", "relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(20)


def shards_held(port: int) -> int | None:
    """How many outbox shards the relay serving metrics on `port` publishes (None: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("relay_shards_held "):
                    return int(float(line.split()[1]))
    except OSError:
        return None
    return None


async def wait_shares(ports: list[int], shares: list[int], seconds: float = 20) -> list[int | None]:
    """The shards each relay holds, once they are `shares` (or when `seconds` ran out)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        held = [shards_held(p) for p in ports]
        if sorted(held, key=str) == sorted(shares) or asyncio.get_running_loop().time() > deadline:
            return held
        await asyncio.sleep(0.2)


async def test_two_relays_share_the_shards_and_one_takes_over_the_others(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    with (
        relay_process(infra, database_url, topic) as (first, first_port),
        relay_process(infra, database_url, topic) as (_, second_port),
    ):
        assert await wait_shares([first_port, second_port], [8, 8]) == [8, 8]
        for i in range(20):
            await create(pg_pool, f"before-{i}")
        before = {f"before-{i}" for i in range(20)}
        assert before <= await names_arrive(infra, topic, before, seconds=60)
        first.kill()  # SIGKILL: its session ends, PostgreSQL releases its shards' locks
        first.wait(10)
        started = asyncio.get_running_loop().time()
        for i in range(20):
            await create(pg_pool, f"after-{i}")
        assert await wait_shares([second_port], [16]) == [16]
        took_over = asyncio.get_running_loop().time() - started
        # The killed relay may have published rows it had not marked yet; they come again
        # (at least once), so wait for the names rather than for a count.
        after = {f"after-{i}" for i in range(20)}
        seen = await names_arrive(infra, topic, after, seconds=60)
    assert after <= seen
    assert took_over < 10


async def test_a_relay_that_joins_gets_its_share_from_the_one_running(
    infra: Infra, database_url: str, topic: str
) -> None:
    with relay_process(infra, database_url, topic) as (_, first_port):
        assert await wait_shares([first_port], [16]) == [16]
        with relay_process(infra, database_url, topic) as (_, second_port):
            assert await wait_shares([first_port, second_port], [8, 8]) == [8, 8]
            with relay_process(infra, database_url, topic) as (_, third_port):
                # 16 over three: at most six each, every shard held.
                held = await wait_shares([first_port, second_port, third_port], [6, 6, 4])
                assert sorted(held, key=str) == [4, 6, 6]
        assert await wait_shares([first_port], [16]) == [16]


async def test_relay_resumes_after_kafka_was_stopped_and_started(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    if infra.stack_dir is None:
        pytest.skip("needs control over the Kafka server (native or testcontainers mode)")
    async with running_relay(infra, database_url, topic):
        await create(pg_pool, "before-outage")
        assert len(await consume(infra, topic, 1)) == 1
        await asyncio.to_thread(infra.stackctl, "stop", "kafka")
        try:
            for i in range(3):
                await create(pg_pool, f"during-{i}")
            await asyncio.sleep(3)  # the relay fails, backs off and retries meanwhile
        finally:
            await asyncio.to_thread(infra.stackctl, "start", "kafka")
        wanted = {"before-outage", "during-0", "during-1", "during-2"}
        assert await names_arrive(infra, topic, wanted, seconds=90) == wanted
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_published_rows_are_purged_after_retention(
    infra: Infra, pg_pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    await create(pg_pool, "old")
    async with running_relay(infra, database_url, topic):
        await consume(infra, topic, 1)
    async with pg_pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET published_at = now() - interval '2 days'")
        settings = CommandSettings(
            DATABASE_URL=database_url,
            KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap_servers,
            EVENTS_TOPIC=topic,
            outbox_retention_seconds=86400,
        )
        relay = build_relay(settings, CollectorRegistry())
        await create(pg_pool, "new")
        assert await relay.purge(conn) == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
