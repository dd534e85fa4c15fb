"""How long the projector waits between category refreshes."""

import pytest

from projector.consumer import refresh_pause


def test_fast_refreshes_keep_the_configured_interval() -> None:
    assert refresh_pause(0.01, 1.0, 0.25) == 1.0


def test_slow_refreshes_fill_at_most_their_share_of_the_time() -> None:
    took = 2.0
    pause = refresh_pause(took, 1.0, 0.25)
    assert pause == pytest.approx(6.0)
    assert took / (took + pause) == pytest.approx(0.25)


def test_the_wait_is_at_most_ten_intervals() -> None:
    assert refresh_pause(30.0, 1.0, 0.25) == 10.0


def test_a_share_of_one_never_waits_longer_than_the_interval() -> None:
    assert refresh_pause(30.0, 1.0, 1.0) == 1.0
