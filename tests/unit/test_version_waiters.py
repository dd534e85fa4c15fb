"""Read-your-writes waits of a query process: one reader's rounds over an in-memory read model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from catalog_contracts.events import ProductState
from query_service.ports import ReadModelUnavailable
from query_service.waiters import VersionWaiters, batches, next_pause, reached
from tests.fixtures.events import ProductHistory
from tests.fixtures.fake_read_model import FakeReadModel

POLL = 0.005
LONG = 30.0  # a deadline no test reaches
BOUND = 2.0  # how long a test waits for an answer before it fails

T = TypeVar("T")


async def until(condition: Callable[[], bool]) -> None:
    """Return once `condition` holds; fail (TimeoutError) if it does not within `BOUND` s."""
    async with asyncio.timeout(BOUND):
        while not condition():
            await asyncio.sleep(0.001)


async def answered(*waits: Awaitable[T]) -> list[T]:
    """The answers of `waits`; fail if they do not all come within `BOUND` seconds."""
    async with asyncio.timeout(BOUND):
        return list(await asyncio.gather(*waits))


@pytest.fixture
def products() -> list[ProductState]:
    return [ProductHistory(name=f"Product {n}").state for n in range(5)]


@pytest.fixture
def store(products: list[ProductState]) -> FakeReadModel:
    return FakeReadModel(products)


@pytest.fixture
def ids(products: list[ProductState]) -> list[str]:
    """The products' ids in the order the reads name them."""
    return sorted(str(state.id) for state in products)


@pytest.fixture
async def waiters(store: FakeReadModel) -> AsyncIterator[VersionWaiters]:
    async with VersionWaiters(store, poll_seconds=POLL) as opened:
        yield opened


def wait_for(
    waiters: VersionWaiters, product_id: str, min_version: int, seconds: float = LONG
) -> asyncio.Task[dict[str, Any] | None]:
    return asyncio.create_task(waiters.wait(product_id, min_version, time.monotonic() + seconds))


async def test_one_read_serves_the_waiters_of_every_product(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    tasks = [wait_for(waiters, key, 2) for key in ids]
    await until(lambda: waiters.waiting == len(ids))
    await until(lambda: len(store.many_reads) >= 2)
    for key in ids:
        store.bump(key)
    answers = await answered(*tasks)
    assert [a["version"] if a else None for a in answers] == [2] * len(ids)
    # Every round was one query of every product waited for, not a query per request.
    assert store.many_reads
    assert all(read == ids for read in store.many_reads)
    assert waiters.waiting == 0


async def test_waiters_of_one_product_share_its_place_in_the_read(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    key = ids[0]
    at_2 = [wait_for(waiters, key, 2) for _ in range(3)]
    at_3 = wait_for(waiters, key, 3)
    await until(lambda: waiters.waiting == 4)
    store.bump(key)
    answers = await answered(*at_2)
    assert [a["version"] if a else None for a in answers] == [2, 2, 2]
    # Another round at version 2 leaves the waiter for version 3 waiting.
    reads = len(store.many_reads)
    await until(lambda: len(store.many_reads) > reads)
    assert not at_3.done()
    assert waiters.waiting == 1
    store.bump(key)
    (answer,) = await answered(at_3)
    assert answer is not None
    assert answer["version"] == 3
    assert all(read == [key] for read in store.many_reads)


async def test_reads_are_split_at_the_cap_of_ids(store: FakeReadModel, ids: list[str]) -> None:
    async with VersionWaiters(store, poll_seconds=POLL, max_ids_per_read=2) as waiters:
        tasks = [wait_for(waiters, key, 2) for key in ids]
        await until(lambda: waiters.waiting == len(ids))
        await until(lambda: len(store.many_reads) >= 6)
        for key in ids:
            store.bump(key)
        await answered(*tasks)
    rounds = [store.many_reads[n : n + 3] for n in range(0, len(store.many_reads), 3)]
    assert all(round_ == [ids[0:2], ids[2:4], ids[4:5]] for round_ in rounds)


async def test_a_waiter_past_its_deadline_gets_the_last_document_read(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    started = time.monotonic()
    (document,) = await answered(waiters.wait(ids[0], 2, started + 0.05))
    elapsed = time.monotonic() - started
    # Behind at its deadline: the route answers the 503 with this version.
    assert document is not None
    assert document["version"] == 1
    assert 0.05 <= elapsed < 1.0
    assert store.many_reads
    assert waiters.waiting == 0


async def test_a_product_never_projected_is_none_at_the_deadline(
    store: FakeReadModel, waiters: VersionWaiters
) -> None:
    missing = "00000000-0000-4000-8000-000000000404"
    assert await answered(waiters.wait(missing, 1, time.monotonic() + 0.03)) == [None]
    assert [missing] in store.many_reads


async def test_a_deadline_cuts_the_pause_short_for_a_last_read(
    store: FakeReadModel, ids: list[str]
) -> None:
    async with VersionWaiters(store, poll_seconds=10) as waiters:
        started = time.monotonic()
        (document,) = await answered(waiters.wait(ids[0], 2, started + 0.03))
        assert time.monotonic() - started < 1.0
    assert document is not None
    assert document["version"] == 1
    assert store.many_reads == [[ids[0]]]


async def test_a_store_error_fails_every_waiter_at_once(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    tasks = [wait_for(waiters, key, 2) for key in ids]
    await until(lambda: waiters.waiting == len(ids))
    store.unavailable = True
    async with asyncio.timeout(BOUND):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, ReadModelUnavailable) for result in results)
    # One error per request, each from the store's.
    assert len({id(result) for result in results}) == len(ids)
    assert waiters.waiting == 0
    # The reader outlives the error: the next wait is answered.
    store.unavailable = False
    store.bump(ids[0])
    (answer,) = await answered(waiters.wait(ids[0], 2, time.monotonic() + LONG))
    assert answer is not None
    assert answer["version"] == 2


async def test_a_cancelled_wait_leaves_no_waiter_and_no_reads(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    gone = wait_for(waiters, ids[0], 2)
    stays = wait_for(waiters, ids[0], 2)
    await until(lambda: waiters.waiting == 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert waiters.waiting == 1
    store.bump(ids[0])
    (answer,) = await answered(stays)
    assert answer is not None
    assert answer["version"] == 2
    reads = len(store.many_reads)
    await asyncio.sleep(POLL * 10)
    assert len(store.many_reads) == reads


async def test_nothing_is_read_while_nobody_waits(
    store: FakeReadModel, waiters: VersionWaiters, ids: list[str]
) -> None:
    await asyncio.sleep(POLL * 10)
    assert store.many_reads == []
    store.bump(ids[0])
    await answered(waiters.wait(ids[0], 2, time.monotonic() + LONG))
    reads = len(store.many_reads)
    assert reads >= 1
    await asyncio.sleep(POLL * 10)
    assert len(store.many_reads) == reads


async def test_closing_fails_the_requests_still_waiting(
    store: FakeReadModel, ids: list[str]
) -> None:
    waiters = VersionWaiters(store, poll_seconds=POLL)
    async with waiters:
        waiting = wait_for(waiters, ids[0], 2)
        await until(lambda: waiters.waiting == 1)
    with pytest.raises(ReadModelUnavailable):
        await answered(waiting)
    with pytest.raises(ReadModelUnavailable):
        await waiters.wait(ids[0], 1, time.monotonic() + LONG)


def test_a_version_is_reached_at_or_past_it() -> None:
    assert reached({"version": 3}, 3)
    assert reached({"version": 4}, 3)
    assert not reached({"version": 2}, 3)
    assert not reached(None, 1)


def test_the_pause_is_cut_short_at_the_earliest_deadline() -> None:
    assert next_pause(0.02, [], 100.0) == 0.02
    assert next_pause(0.02, [100.5, 100.005], 100.0) == pytest.approx(0.005)
    assert next_pause(0.02, [99.0], 100.0) == 0.0


def test_batches_cover_the_ids_in_order() -> None:
    assert list(batches(["a", "b", "c", "d", "e"], 2)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(batches([], 2)) == []
