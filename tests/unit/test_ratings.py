"""Rating figures from a review tally: exactly what the published reviews give, in any order."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from catalog_read_models.ratings import figures, merge_entries

# review id -> its successive entries (versions 1..n), as the projector may receive them.
Entry = dict[str, Any]

entries = st.fixed_dictionaries(
    {
        "rating": st.integers(1, 5),
        "status": st.sampled_from(["published", "removed"]),
        "title": st.text(max_size=5),
        "author": st.text(min_size=1, max_size=5),
        "created_at": st.sampled_from(
            [f"2026-11-2{d}T12:00:00.000000Z" for d in range(4)]  # ties happen
        ),
    }
)
tallies = st.dictionaries(
    st.uuids().map(str), st.lists(entries, min_size=1, max_size=3), max_size=25
)


def versioned(tally: dict[str, list[Entry]]) -> list[tuple[str, Entry]]:
    return [
        (review_id, {**entry, "version": version})
        for review_id, history in tally.items()
        for version, entry in enumerate(history, start=1)
    ]


def final(tally: dict[str, list[Entry]]) -> dict[str, Entry]:
    return {rid: {**history[-1], "version": len(history)} for rid, history in tally.items()}


@given(tallies)
def test_average_and_distribution_equal_a_direct_computation(
    tally: dict[str, list[Entry]],
) -> None:
    reviews = final(tally)
    result = figures(reviews)
    published = [e["rating"] for e in reviews.values() if e["status"] == "published"]
    assert result.count == len(published)
    assert result.distribution == {str(s): published.count(s) for s in range(1, 6)}
    if not published:
        assert (result.average, result.sort, result.latest) == (None, -1, [])
        return
    mean = (Decimal(sum(published)) / Decimal(len(published))).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    assert result.average == str(mean)
    assert result.sort == int(mean * 100)
    newest = sorted(
        ((rid, e) for rid, e in reviews.items() if e["status"] == "published"),
        key=lambda item: (item[1]["created_at"], item[0]),
        reverse=True,
    )[:5]
    assert [r["id"] for r in result.latest] == [rid for rid, _ in newest]


@given(tallies, st.randoms(use_true_random=False))
def test_applying_entries_in_any_order_with_duplicates_gives_the_same_tally(
    tally: dict[str, list[Entry]], rng: random.Random
) -> None:
    updates = versioned(tally)
    updates += rng.sample(updates, len(updates) // 2)  # redeliveries
    rng.shuffle(updates)
    stored: dict[str, Any] = {}
    for review_id, entry in updates:
        merged = merge_entries(stored, {review_id: entry})
        if merged is not None:
            stored = merged
    assert stored == final(tally)
    assert figures(stored) == figures(final(tally))


def test_an_entry_no_newer_than_the_stored_one_changes_nothing() -> None:
    stored = {"r": {"rating": 4, "status": "removed", "version": 2}}
    assert merge_entries(stored, {"r": {"rating": 4, "status": "published", "version": 1}}) is None
    assert merge_entries(stored, {"r": {"rating": 4, "status": "removed", "version": 2}}) is None


def test_half_hundredths_round_up() -> None:
    def entry(rating: int) -> Entry:
        return {
            "rating": rating,
            "status": "published",
            "version": 1,
            "title": "t",
            "author": "a",
            "created_at": "2026-11-26T12:00:00.000000Z",
        }

    # 33 / 8 = 4.125
    result = figures({str(i): entry(r) for i, r in enumerate([5, 4, 4, 4, 4, 4, 4, 4])})
    assert (result.average, result.sort) == ("4.13", 413)
