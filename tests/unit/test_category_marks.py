"""The group commit of category marks: batches applied side by side share one round of marks.

The collection here stands for a categories collection in which every category exists (so a
round is one `update_many`); it fails a round when told to. The server's side of a mark is
tested on the MongoDB wire server in tests/integration/test_multi_stream.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from catalog_read_models.categories import CategoryMarks


@dataclass
class Categories:
    full_name: str = "catalog.categories"
    rounds: list[list[str]] = field(default_factory=list)
    failures: int = 0  # how many of the next rounds fail
    gate: asyncio.Event | None = None  # a round waits for it (to race waiters against it)

    async def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        names = list(query["_id"]["$in"])
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        self.rounds.append(names)
        return type("Result", (), {"matched_count": len(names)})()


async def test_batches_marking_at_once_share_one_round() -> None:
    collection = Categories()
    marks = CategoryMarks()
    await asyncio.gather(*(marks.mark(collection, ["shared", f"own-{n}"]) for n in range(6)))  # type: ignore[arg-type]
    assert collection.rounds == [["own-0", "own-1", "own-2", "own-3", "own-4", "own-5", "shared"]]


async def test_a_mark_handed_over_during_a_round_waits_for_the_next() -> None:
    collection = Categories(gate=asyncio.Event())
    marks = CategoryMarks()
    first = asyncio.create_task(marks.mark(collection, ["a"]))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the round of "a" has begun and waits on the server
    second = asyncio.create_task(marks.mark(collection, ["b"]))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    collection.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(first, second)
    assert collection.rounds == [["a"], ["b"]]


async def test_a_failed_round_fails_each_of_its_batches_and_the_next_is_written() -> None:
    collection = Categories(failures=1)
    marks = CategoryMarks()
    results = await asyncio.gather(
        marks.mark(collection, ["a"]),  # type: ignore[arg-type]
        marks.mark(collection, ["b"]),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert collection.rounds == []
    await marks.mark(collection, ["a", "b"])  # type: ignore[arg-type]
    assert collection.rounds == [["a", "b"]]


async def test_a_waiter_cancelled_does_not_cancel_the_round_of_the_others() -> None:
    collection = Categories(gate=asyncio.Event())
    marks = CategoryMarks()
    leaving = asyncio.create_task(marks.mark(collection, ["a"]))  # type: ignore[arg-type]
    staying = asyncio.create_task(marks.mark(collection, ["b"]))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    collection.gate.set()  # type: ignore[union-attr]
    await staying
    assert collection.rounds == [["a", "b"]]
