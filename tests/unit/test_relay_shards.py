"""How relays share the outbox's shards: the fair share and the ranges operators read."""

from __future__ import annotations

import pytest

from catalog_contracts.relay import shard_ranges
from command_service.relay.relay import Shards


@pytest.mark.parametrize(
    ("relays", "share"), [(0, 16), (1, 16), (2, 8), (3, 6), (4, 4), (5, 4), (16, 1), (20, 1)]
)
def test_a_relay_takes_at_most_its_fair_share(relays: int, share: int) -> None:
    assert Shards(16).share(relays) == share


@pytest.mark.parametrize("relays", range(1, 20))
def test_the_shares_of_the_running_relays_cover_every_shard(relays: int) -> None:
    assert Shards(16).share(relays) * relays >= 16


def test_the_free_shards_are_those_nobody_holds() -> None:
    assert Shards(4).free({1, 3}) == [0, 2]
    assert Shards(4).free(set()) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("shards", "text"),
    [
        ([], ""),
        ([3], "3"),
        (range(8), "0-7"),
        ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"),
        ([2, 1, 1], "1-2"),
    ],
)
def test_shards_read_as_ranges(shards: list[int], text: str) -> None:
    assert shard_ranges(shards) == text
