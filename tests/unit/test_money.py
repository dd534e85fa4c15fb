"""Money is exact: decimal strings in, two-place strings and integer cents out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog_contracts.money import (
    MAX_PRICE,
    PriceError,
    cents_to_price,
    format_price,
    parse_price,
    price_to_cents,
)


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [("0", "0.00"), ("19.9", "19.90"), ("19.99", "19.99"), (5, "5.00"), (19.99, "19.99")],
)
def test_parse_and_format(given_value: object, expected: str) -> None:
    assert format_price(parse_price(given_value)) == expected


@pytest.mark.parametrize(
    "bad", ["-1", "1.234", "NaN", "Infinity", "", "1e400", True, None, [], "12,5"]
)
def test_parse_rejects(bad: object) -> None:
    with pytest.raises(PriceError):
        parse_price(bad)


@given(st.integers(min_value=0, max_value=int(MAX_PRICE * 100)))
def test_cents_round_trip(cents: int) -> None:
    price = cents_to_price(cents)
    assert price_to_cents(price) == cents
    assert parse_price(format_price(price)) == price
    assert Decimal(format_price(price)) * 100 == cents
