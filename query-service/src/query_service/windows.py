"""A page of a sorted list read in key windows, so the store's work is bounded by the page.

DocumentDB (the local read store) answers a filter from an index but sorts every document that
matches it: a page of the whole catalog sorted by price costs a sort of the whole catalog.
A range on the sort key bounds that: the store then sorts only what lies in the window. So a
page is read window after window along its sort key, each window's documents after the
previous one's, until the page is full:

1. the first window reaches as far as a page of this list reached last time (learned per list
   shape: sort, filter, first page or not), with half as much again to spare;
2. the next ones are 8 and 64 times as wide;
3. the last one is unbounded, so the page is always complete and always correct.

A list seen for the first time is read in one unbounded window, and teaches the next read. A
store that walks an index in order (MongoDB) is unharmed: each window is a bounded index scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache

from catalog_contracts.events import format_timestamp
from catalog_contracts.read_models import name_key

# How much wider each window is than the one before it, and how many bounded windows come
# before the unbounded last one.
GROWTH = 8
BOUNDED_WINDOWS = 3
# How much further than last time the first window reaches (a list grows between reads).
SPARE = 1.5
# List shapes remembered per process (a shape is a sort, a filter and first-or-next page).
SHAPES = 4096


def _timestamp_micros(value: Any) -> int:
    parsed = datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def _timestamp_bound(micros: int) -> str:
    seconds, rest = divmod(max(micros, 0), 1_000_000)
    return format_timestamp(datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest))


def _same(value: Any) -> int:
    return int(value)


@dataclass(frozen=True, slots=True)
class Axis:
    """A sort order's values as integers: where windows are computed.

    `field` is what a window filters on, `key` turns a document's sort value into a position
    and `bound` a position into a value of `field`. Positions keep the sort's order, so a
    window of positions holds a contiguous run of the sorted list.
    """

    field: str
    key: Callable[[Any], int]
    bound: Callable[[int], Any] = _same


# sort field -> its axis
AXES: dict[str, Axis] = {
    "price_cents": Axis("price_cents", _same),
    "rating_sort": Axis("rating_sort", _same),
    "name": Axis("name_key", name_key),
    "updated_at": Axis("updated_at", _timestamp_micros, _timestamp_bound),
}


@dataclass(frozen=True, slots=True)
class Window:
    """Positions after `after` (exclusive) up to `through` (inclusive) in the sort's
    direction; None is open. The first window of a page after a cursor starts at the cursor's
    position inclusive (`from_start`), as documents tied with it may still follow."""

    after: int | None
    through: int | None
    from_start: bool = False

    def condition(self, axis: Axis, ascending: bool) -> dict[str, Any]:
        """The filter on `axis.field` that keeps this window (empty when unbounded)."""
        low_op, high_op = ("$gt", "$lte") if ascending else ("$lt", "$gte")
        if self.from_start:
            low_op = "$gte" if ascending else "$lte"
        bounds: dict[str, Any] = {}
        if self.after is not None:
            bounds[low_op] = axis.bound(self.after)
        if self.through is not None:
            bounds[high_op] = axis.bound(self.through)
        return {axis.field: bounds} if bounds else {}


class Windows:
    """The windows of each list shape, learned from how far its pages reached."""

    def __init__(self, shapes: int = SHAPES) -> None:
        # (shape, first page?) -> (the first window's edge: a position for a first page, a
        # distance from the cursor for a later one; the width the next windows grow from)
        self._reach: LRUCache[tuple[Any, bool], tuple[int, int]] = LRUCache(maxsize=shapes)

    def plan(self, shape: Any, start: int | None, ascending: bool) -> Iterator[Window]:
        """The windows of one page of `shape`, from `start` (a cursor's position) on."""
        learned = self._reach.get((shape, start is None))
        if learned is None:
            yield Window(start, None, from_start=start is not None)
            return
        reach, width = learned
        step = 1 if ascending else -1
        edge = reach if start is None else start + step * reach
        yield Window(start, edge, from_start=start is not None)
        for n in range(1, BOUNDED_WINDOWS):
            after, edge = edge, edge + step * width * GROWTH**n
            yield Window(after, edge)
        yield Window(edge, None)

    def learn(self, shape: Any, start: int | None, first: int, last: int) -> None:
        """A full page of `shape` from `start` whose documents spanned positions `first` (the
        page's first) to `last` (one past the page, the document that proved it full)."""
        span = max(int(abs(last - first) * SPARE), 1)
        if start is None:
            # Where a first page ends, with room for the list to grow.
            self._reach[(shape, True)] = (last + (last - first) // 2, span)
        else:
            self._reach[(shape, False)] = (max(int(abs(last - start) * SPARE), 1), span)
