"""Read-your-writes waits of one query process, answered together by one reader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from query_service.ports import ReadModel, ReadModelUnavailable

log = logging.getLogger(__name__)

Document = dict[str, Any]

# Ids per `$in` read: a thousand keeps each query's filter and answer a few hundred kB at most,
# however many products are waited for at once.
MAX_IDS_PER_READ = 1000


def reached(document: Document | None, min_version: int) -> bool:
    """Whether the product's document exists at `min_version` or later."""
    return document is not None and document["version"] >= min_version


def batches(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """`ids` in consecutive slices of at most `size`."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def next_pause(poll_seconds: float, deadlines: Iterable[float], now: float) -> float:
    """The pause before the next round: the poll interval, cut short at the earliest deadline."""
    # A last read at the deadline: a version projected just in time is still a 200.
    return max(0.0, min([poll_seconds, *(deadline - now for deadline in deadlines)]))


@dataclass(eq=False, slots=True)
class _Waiter:
    min_version: int
    deadline: float
    answer: asyncio.Future[Document | None]


class VersionWaiters:
    """The `min_version` waits of one process, answered by one background reader.

    A round, `poll_seconds` after the last (sooner at a deadline), reads every product some
    request waits for, `max_ids_per_read` ids per read, then answers each waiter whose product
    reached its version, and each waiter past its deadline, with the document just read. A
    failed round fails each of its waiters; while nobody waits, nothing is read.
    """

    def __init__(
        self,
        read_model: ReadModel,
        *,
        poll_seconds: float,
        max_ids_per_read: int = MAX_IDS_PER_READ,
    ) -> None:
        self._read_model = read_model
        self._poll = poll_seconds
        self._max_ids = max_ids_per_read
        # Waiters by product id: the waiters of one product share its place in the reads.
        self._waiting: dict[str, list[_Waiter]] = {}
        self._wanted = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many requests wait now."""
        return sum(len(waiters) for waiters in self._waiting.values())

    async def __aenter__(self) -> Self:
        self._reader = asyncio.create_task(self._read_rounds(), name="min-version-reader")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the reader; a request still waiting gets `ReadModelUnavailable` (a 503)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._fail(list(self._waiting), ReadModelUnavailable("the query service is stopping"))

    async def wait(self, product_id: str, min_version: int, deadline: float) -> Document | None:
        """The product's document once it reaches `min_version`, else at `deadline` (a
        `time.monotonic()` instant) the one read then (None without one)."""
        if self._reader is None:
            raise ReadModelUnavailable("the query service is not reading versions")
        waiter = _Waiter(min_version, deadline, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(product_id, []).append(waiter)
        self._wanted.set()
        try:
            return await waiter.answer
        finally:
            # Answered, or cancelled with its request (client gone): no more reads for it.
            self._forget(product_id, waiter)

    def _forget(self, product_id: str, waiter: _Waiter) -> None:
        waiters = self._waiting.get(product_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[product_id]

    async def _read_rounds(self) -> None:
        while True:
            if not self._waiting:
                self._wanted.clear()
                await self._wanted.wait()
            deadlines = (w.deadline for waiters in self._waiting.values() for w in waiters)
            await asyncio.sleep(next_pause(self._poll, deadlines, time.monotonic()))
            if self._waiting:
                await self._read_round()

    async def _read_round(self) -> None:
        ids = sorted(self._waiting)
        try:
            documents: dict[str, Document] = {}
            for some in batches(ids, self._max_ids):
                documents.update(await self._read_model.get_many(some))
            self._answer(ids, documents, time.monotonic())
        except ReadModelUnavailable as exc:
            self._fail(ids, exc)
        except Exception as exc:
            # A bug, not the store: its waiters get a 500 rather than a wait that never ends.
            log.exception("a min_version read round failed")
            self._fail(ids, exc)

    def _answer(self, ids: Iterable[str], documents: dict[str, Document], now: float) -> None:
        for product_id in ids:
            document = documents.get(product_id)
            left: list[_Waiter] = []
            # Waiters that came while the round read are settled by it too: a document at
            # their version answers them whenever it was read.
            for waiter in self._waiting.pop(product_id, []):
                if waiter.answer.done():
                    continue
                if reached(document, waiter.min_version) or now >= waiter.deadline:
                    waiter.answer.set_result(document)
                else:
                    left.append(waiter)
            if left:
                self._waiting[product_id] = left

    def _fail(self, ids: Iterable[str], error: Exception) -> None:
        for product_id in ids:
            for waiter in self._waiting.pop(product_id, []):
                if not waiter.answer.done():
                    # One error per request: a shared instance would collect every
                    # request's traceback.
                    failure = (
                        ReadModelUnavailable(str(error))
                        if isinstance(error, ReadModelUnavailable)
                        else RuntimeError("reading the waited-for versions failed")
                    )
                    failure.__cause__ = error
                    waiter.answer.set_exception(failure)
