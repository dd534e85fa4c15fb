"""The benchmark's figures cannot flatter us: percentiles pooled over every repetition, a
command or event that never came counted at the window's length, failures counted."""

from __future__ import annotations

import pytest

from benchmarks.common import median, percentile
from benchmarks.paced_http import Fate, summarize
from benchmarks.samples import chunks, paired_ratio, pooled, within_window


def test_percentiles_are_pooled_over_the_repetitions_not_the_median_of_each() -> None:
    # Two quiet repetitions and one where a tenth of the samples took a second.
    quiet = [10.0] * 100
    slow = [10.0] * 90 + [1000.0] * 10
    runs = [quiet, quiet, slow]
    p50, p99 = pooled(runs)
    assert p50 == 10.0
    assert p99 == 1000.0  # 10 of 300 samples are slow: above the 99th percentile's rank
    # What the median of each repetition's p99 would have said.
    assert median([percentile(run, 99) for run in runs]) == 10.0


def test_pooling_no_samples_is_not_a_figure() -> None:
    p50, p99 = pooled([[], []])
    assert p50 != p50  # NaN: a stage with nothing measured reports nothing, not zero
    assert p99 != p99


def test_what_never_came_counts_at_the_windows_length() -> None:
    samples, late = within_window([0.01, None, 0.02, 31.0, 30.0], 30.0)
    assert samples == [0.01, 30.0, 0.02, 30.0, 30.0]
    assert late == 3  # never, after the window, at its very end


def test_paired_ratio_is_the_median_of_back_to_back_pairs() -> None:
    assert paired_ratio([100.0, 50.0, 90.0], [100.0, 100.0, 100.0]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="shorter"):
        paired_ratio([1.0, 2.0], [1.0])


def test_ids_go_in_chunks_that_cover_them_all() -> None:
    ids = [str(n) for n in range(25)]
    parts = list(chunks(ids, 10))
    assert [len(part) for part in parts] == [10, 10, 5]
    assert [key for part in parts for key in part] == ids
    assert list(chunks([], 10)) == []


def test_an_e2e_run_keeps_every_watched_command_as_a_sample() -> None:
    fates = [
        *(Fate(failed=False, watched=True, readable_after=0.010) for _ in range(96)),
        Fate(failed=False, watched=True, readable_after=None),  # never readable
        Fate(failed=False, watched=True, readable_after=45.0),  # readable too late
        Fate(failed=True, watched=True),  # its command failed: never readable either
        Fate(failed=True, watched=False),  # a failure, but no sample
        *(Fate(failed=False, watched=False) for _ in range(100)),
    ]
    result = summarize(fates, window=30.0)
    assert result["commands"] == 200
    assert result["watched"] == 99
    samples = result["samples_ms"]
    assert isinstance(samples, list)
    assert len(samples) == 99
    assert samples.count(30_000.0) == 3  # none of the three was dropped
    assert result["late"] == 2
    assert result["failures"] == 4  # two failed commands and two not readable in time
    assert result["p50_ms"] == pytest.approx(10.0)
    assert result["p99_ms"] == 30_000.0
    assert result["window_ms"] == 30_000.0


def test_an_e2e_run_where_everything_was_readable_has_no_failures() -> None:
    fates = [Fate(failed=False, watched=True, readable_after=0.005 * n) for n in range(1, 11)]
    result = summarize(fates, window=30.0)
    assert result["failures"] == result["late"] == 0
    assert result["p50_ms"] == pytest.approx(25.0)
    assert result["p99_ms"] == pytest.approx(50.0)
