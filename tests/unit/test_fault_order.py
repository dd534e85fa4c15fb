"""The fault suite's order check on the topics: republished versions pass, gaps and
reordered versions do not."""

from __future__ import annotations

import pytest

from tests.faults.scenarios import VersionOrder


def seen(*versions: int) -> list[str]:
    order = VersionOrder()
    for offset, version in enumerate(versions):
        order.see("product:a", version, f"t@{offset}")
    return order.violations


@pytest.mark.parametrize(
    "versions", [(1, 2, 3), (1, 2, 3, 2, 3, 4), (4, 5), (1, 1, 2, 1, 2, 3), (7,)]
)
def test_in_order_with_republished_runs(versions: tuple[int, ...]) -> None:
    assert seen(*versions) == []


@pytest.mark.parametrize(
    ("versions", "violation"),
    [
        ((1, 3), "product:a: v3 after v1 (t@1)"),
        ((1, 2, 4, 3), "product:a: v4 after v2 (t@2)"),
        ((2, 1, 4), "product:a: v4 after v2 (t@2)"),
    ],
)
def test_a_skipped_or_early_version_is_reported(versions: tuple[int, ...], violation: str) -> None:
    assert seen(*versions) == [violation]


def test_aggregates_are_checked_apart() -> None:
    order = VersionOrder()
    order.see("product:a", 1, "t@0")
    order.see("review:b", 1, "r@0")
    order.see("product:a", 2, "t@1")
    order.see("review:b", 3, "r@1")
    assert order.violations == ["review:b: v3 after v1 (r@1)"]
