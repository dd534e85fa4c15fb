"""Reading a page window after window gives the page a full sort gives, whatever was learned."""

from __future__ import annotations

import operator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog_contracts.read_models import name_key
from query_service.windows import AXES, Axis, Window, Windows

CHECKS = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _in(window: Window, axis: Axis, ascending: bool, value: int) -> bool:
    condition = window.condition(axis, ascending).get(axis.field, {})
    return all(CHECKS[op](value, bound) for op, bound in condition.items())


def _read(
    windows: Windows, shape: str, keys: list[int], ascending: bool, after: int | None, limit: int
) -> tuple[list[int], int]:
    """One page of `keys` after position `after`, as the query side reads it: window after
    window, each sorted, until limit + 1 are in; returns the page and the windows read."""
    axis = AXES["price_cents"]
    ordered = sorted(keys, reverse=not ascending)
    if after is not None:
        ordered = [k for k in ordered if (k > after if ascending else k < after)]
    found: list[int] = []
    read = 0
    for window in windows.plan(shape, after, ascending):
        read += 1
        found += [k for k in ordered if _in(window, axis, ascending, k)][: limit + 1 - len(found)]
        if len(found) > limit:
            break
    if len(found) > limit:
        windows.learn(shape, after, found[0], found[limit])
    return found[:limit], read


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.integers(0, 10_000), unique=True, max_size=300),
    ascending=st.booleans(),
    limit=st.integers(1, 30),
    rounds=st.integers(1, 4),
)
def test_windows_read_exactly_the_sorted_page(
    keys: list[int], ascending: bool, limit: int, rounds: int
) -> None:
    windows = Windows()
    expected = sorted(keys, reverse=not ascending)
    for _ in range(rounds):  # the later rounds read with what the earlier ones taught
        after: int | None = None
        pages: list[int] = []
        while True:
            page, _ = _read(windows, "shape", keys, ascending, after, limit)
            pages += page
            if len(page) < limit:
                break
            after = page[-1]
        assert pages == expected


def test_an_unknown_list_is_one_unbounded_window_and_a_known_one_is_bounded() -> None:
    windows = Windows()
    keys = list(range(0, 100_000, 7))
    page, read = _read(windows, "prices", keys, True, None, 20)
    assert read == 1
    assert page == keys[:20]
    plan = list(windows.plan("prices", None, True))
    assert plan[0].after is None
    assert plan[0].through is not None
    assert plan[0].through < 300  # a page's reach, not the catalog's
    assert plan[-1].through is None  # the last window is always open
    page, read = _read(windows, "prices", keys, True, None, 20)
    assert (page, read) == (keys[:20], 1)
    # A later page learns its own width, from the cursor on.
    _read(windows, "prices", keys, True, page[-1], 20)
    nxt = next(iter(windows.plan("prices", 5_000, True)))
    assert nxt.from_start
    assert nxt.after == 5_000
    assert nxt.through is not None
    assert 5_000 < nxt.through < 5_300


def test_shapes_are_learned_apart() -> None:
    windows = Windows()
    _read(windows, "category a", list(range(1_000)), True, None, 10)
    assert list(windows.plan("category b", None, True)) == [Window(None, None)]


def test_window_conditions_follow_the_direction() -> None:
    axis = AXES["price_cents"]
    assert Window(10, 20).condition(axis, True) == {"price_cents": {"$gt": 10, "$lte": 20}}
    assert Window(20, 10).condition(axis, False) == {"price_cents": {"$lt": 20, "$gte": 10}}
    assert Window(10, None, from_start=True).condition(axis, True) == {"price_cents": {"$gte": 10}}
    assert Window(None, None).condition(axis, True) == {}


def test_timestamps_window_as_their_text() -> None:
    axis = AXES["updated_at"]
    stamp = "2026-12-08T03:10:00.123456Z"
    assert axis.bound(axis.key(stamp)) == stamp
    assert axis.key("2026-12-08T03:10:00.123457Z") == axis.key(stamp) + 1


@given(st.text(max_size=20), st.text(max_size=20))
def test_name_keys_keep_the_order_of_names(a: str, b: str) -> None:
    if a.encode() <= b.encode():
        assert name_key(a) <= name_key(b)
    else:
        assert name_key(a) >= name_key(b)


def test_name_windows_filter_the_key_field() -> None:
    axis: Any = AXES["name"]
    assert axis.field == "name_key"
    assert Window(name_key("A"), name_key("B")).condition(axis, True) == {
        "name_key": {"$gt": name_key("A"), "$lte": name_key("B")}
    }
