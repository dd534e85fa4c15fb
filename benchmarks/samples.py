"""The figures' arithmetic, free of servers so that the unit tests can check it.

Figures that cannot flatter us: latencies are pooled over every repetition's samples (a median
of each repetition's p99 would hide the worst repetition), and a sample that never came within
its window counts at the window's length instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from benchmarks.common import median, percentile

T = TypeVar("T")


def pooled(runs: Iterable[Sequence[float]]) -> tuple[float, float]:
    """p50 and p99 of every repetition's samples taken together."""
    samples = [sample for run in runs for sample in run]
    return percentile(samples, 50), percentile(samples, 99)


def within_window(delays: Iterable[float | None], window: float) -> tuple[list[float], int]:
    """Each delay, with one that did not come within `window` (None: never) at the window's
    length; and how many did not."""
    samples, late = [], 0
    for delay in delays:
        if delay is None or delay >= window:
            samples.append(window)
            late += 1
        else:
            samples.append(delay)
    return samples, late


def paired_ratio(ours: Sequence[float], baselines: Sequence[float]) -> float:
    """Median of each repetition's ours / baseline, measured back to back.

    On a shared machine the load drifts between repetitions; a pair measured a few seconds
    apart sees the same machine, so the ratio of each pair is steadier than a ratio of medians.
    """
    return median([mine / theirs for mine, theirs in zip(ours, baselines, strict=True)])


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`: one bulk delete each, well under a message's limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
