"""Money as exact decimals: a two-place decimal string on the wire, integer cents in read models."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
# NUMERIC(12,2) in the write model holds at most ten integer digits.
MAX_PRICE = Decimal("9999999999.99")
PRICE_PATTERN = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"


class PriceError(ValueError):
    """A value that is not a valid price."""


def parse_price(value: Any) -> Decimal:
    """Parse a price given as a decimal string, int or Decimal; floats are refused by type."""
    if isinstance(value, bool):
        raise PriceError('price must be a decimal string such as "19.99"')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # JSON numbers arrive as floats; repr() is the shortest exact text of what was sent.
        amount = _decimal(repr(value))
    elif isinstance(value, str):
        amount = _decimal(value.strip())
    else:
        raise PriceError('price must be a decimal string such as "19.99"')
    if not amount.is_finite():
        raise PriceError("price must be a finite number")
    if amount < 0:
        raise PriceError("price must not be negative")
    if amount > MAX_PRICE:
        raise PriceError(f"price must be at most {MAX_PRICE}")
    return _exact_cents(amount)


def _exact_cents(amount: Decimal) -> Decimal:
    quantized = amount.quantize(CENT)
    if quantized != amount:
        raise PriceError("price must have at most two decimal places")
    return quantized


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise PriceError('price must be a decimal string such as "19.99"') from None


def format_price(amount: Decimal) -> str:
    """Render a price with exactly two decimal places."""
    return f"{_exact_cents(amount):f}"


def price_to_cents(amount: Decimal) -> int:
    """Integer cents of a two-place price."""
    return int(_exact_cents(amount) * 100)


def cents_to_price(cents: int) -> Decimal:
    """The price a number of cents stands for."""
    return (Decimal(cents) / 100).quantize(CENT)


Price = Annotated[
    Decimal,
    BeforeValidator(parse_price),
    PlainSerializer(format_price, return_type=str, when_used="always"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PRICE_PATTERN,
            "description": 'Decimal amount with at most two decimal places, e.g. "19.99"',
            "examples": ["19.99"],
        }
    ),
]
