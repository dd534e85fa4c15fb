"""A product's rating figures from its review tally: pure functions, no store.

The tally holds one entry per review (published or removed) with the review's version, so
entries merge by "newest version wins" in any order and the figures are a function of the
tally alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from catalog_contracts.events import ReviewState, format_timestamp
from catalog_contracts.read_models import LATEST_REVIEWS

STARS = ("1", "2", "3", "4", "5")
Entry = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Figures:
    """What a product's published reviews give: count, average, distribution, newest."""

    count: int
    average: str | None
    distribution: dict[str, int]
    # The average in hundredths, -1 without reviews (the `sort=-rating` key).
    sort: int
    latest: list[dict[str, Any]]


NO_REVIEWS_HUNDREDTHS = -1


def tally_entry(state: ReviewState) -> dict[str, Any]:
    """The tally entry of a review state."""
    return {
        "rating": state.rating,
        "status": state.status,
        "version": state.version,
        "title": state.title,
        "author": state.author,
        "created_at": format_timestamp(state.created_at),
    }


def merge_entries(
    stored: Mapping[str, Entry], incoming: Mapping[str, Entry]
) -> dict[str, Entry] | None:
    """The tally with each incoming entry that is newer than the stored one; None if unchanged."""
    merged = dict(stored)
    changed = False
    for review_id, entry in incoming.items():
        kept = merged.get(review_id)
        if kept is None or kept["version"] < entry["version"]:
            merged[review_id] = entry
            changed = True
    return merged if changed else None


def average_hundredths(total: int, count: int) -> int:
    """`total / count` in hundredths, rounded half-up (ratings are positive)."""
    return (200 * total + count) // (2 * count)


def format_hundredths(hundredths: int) -> str:
    """Hundredths as a decimal string with two places."""
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def figures(tally: Mapping[str, Entry]) -> Figures:
    """The rating figures of a tally of review entries (removed reviews do not count)."""
    published = [(review_id, e) for review_id, e in tally.items() if e["status"] == "published"]
    distribution = dict.fromkeys(STARS, 0)
    for _, entry in published:
        distribution[str(entry["rating"])] += 1
    count = len(published)
    newest = sorted(published, key=lambda item: (item[1]["created_at"], item[0]), reverse=True)
    latest = [
        {
            "id": review_id,
            "rating": e["rating"],
            "title": e["title"],
            "author": e["author"],
            "created_at": e["created_at"],
        }
        for review_id, e in newest[:LATEST_REVIEWS]
    ]
    if not count:
        return Figures(0, None, distribution, NO_REVIEWS_HUNDREDTHS, latest)
    hundredths = average_hundredths(sum(e["rating"] for _, e in published), count)
    return Figures(count, format_hundredths(hundredths), distribution, hundredths, latest)


NO_FIGURES = figures({})
