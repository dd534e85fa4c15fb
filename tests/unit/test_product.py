"""The Product aggregate's invariants, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from command_service.domain.errors import (
    InsufficientStock,
    InvalidValue,
    ProductDiscontinued,
    StockLimitExceeded,
)
from command_service.domain.model import STOCK_LIMIT, Product

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_product(**overrides: object) -> Product:
    fields: dict[str, object] = {
        "product_id": uuid4(),
        "name": "Laptop",
        "description": None,
        "category": "computers",
        "price": "999.99",
        "stock": 5,
        "now": NOW,
    }
    fields.update(overrides)
    product, _ = Product.create(**fields)  # type: ignore[arg-type]
    return product


def test_create_records_product_created_at_version_1() -> None:
    product, event = Product.create(
        product_id=uuid4(),
        name="Laptop",
        description="fast",
        category="computers",
        price="999.99",
        stock=5,
        now=NOW,
    )
    assert product.version == 1
    assert product.status == "active"
    assert product.price == Decimal("999.99")
    assert event.event_type == "ProductCreated"
    assert event.data.model_dump(mode="json")["price"] == "999.99"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 201),
        ("name", "   "),
        ("category", ""),
        ("category", "c" * 101),
        ("description", "d" * 5001),
        # Not storable as PostgreSQL text: found by schemathesis as a 503.
        ("name", "\x00"),
        ("category", "a\x00b"),
        ("description", "\x00"),
        ("name", "lone \ud800 surrogate"),
        ("price", "-0.01"),
        ("price", "1.001"),
        ("price", "abc"),
        ("price", "10000000000.00"),
        ("stock", -1),
        ("stock", STOCK_LIMIT + 1),
    ],
)
def test_create_rejects_invalid_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidValue) as raised:
        new_product(**{field: value})
    assert raised.value.field == field


def test_price_accepts_whole_numbers_and_one_decimal() -> None:
    assert new_product(price="5").price == Decimal("5.00")
    assert new_product(price="5.5").price == Decimal("5.50")
    assert new_product(price="9999999999.99").price == Decimal("9999999999.99")


def test_adjust_stock_refuses_to_go_below_zero_and_changes_nothing() -> None:
    product = new_product(stock=2)
    with pytest.raises(InsufficientStock):
        product.adjust_stock(-3, reason=None, now=NOW)
    assert product.stock == 2
    assert product.version == 1


def test_adjust_stock_refuses_to_exceed_the_limit() -> None:
    product = new_product(stock=STOCK_LIMIT)
    with pytest.raises(StockLimitExceeded):
        product.adjust_stock(1, reason=None, now=NOW)


def test_changes_bump_version_and_updated_at() -> None:
    product = new_product()
    later = NOW + timedelta(seconds=5)
    changed, event = product.change_price("10.00", now=later)
    assert event is not None
    assert changed.version == 2
    assert changed.updated_at == later
    assert event.data.model_dump(mode="json") == {"old_price": "999.99", "new_price": "10.00"}


def test_unchanged_values_produce_no_event() -> None:
    product = new_product()
    same, event = product.change_price("999.99", now=NOW)
    assert event is None
    assert same is product
    same, event = product.update_details({"name": "Laptop"}, now=NOW)
    assert event is None


def test_update_details_records_changes_and_previous_values() -> None:
    product = new_product()
    changed, event = product.update_details({"name": "Notebook", "category": "laptops"}, now=NOW)
    assert event is not None
    assert changed.name == "Notebook"
    assert event.data.model_dump() == {
        "changes": {"name": "Notebook", "category": "laptops"},
        "previous": {"name": "Laptop", "category": "computers"},
    }


def test_discontinued_product_refuses_every_change() -> None:
    product, _ = new_product().discontinue(reason="end of line", now=NOW)
    assert product.status == "discontinued"
    for change in (
        lambda: product.adjust_stock(1, reason=None, now=NOW),
        lambda: product.change_price("1.00", now=NOW),
        lambda: product.update_details({"name": "x"}, now=NOW),
        lambda: product.discontinue(reason=None, now=NOW),
    ):
        with pytest.raises(ProductDiscontinued):
            change()


def test_updated_at_never_goes_back_when_the_clock_does() -> None:
    product = new_product()
    changed, _ = product.adjust_stock(1, reason=None, now=NOW - timedelta(hours=1))
    assert changed.updated_at == NOW


commands = st.one_of(
    st.tuples(st.just("adjust"), st.integers(-50, 50)),
    st.tuples(st.just("price"), st.decimals(min_value=-5, max_value=1000, places=3)),
    st.tuples(st.just("rename"), st.text(max_size=210)),
    st.tuples(st.just("discontinue"), st.none()),
)


@given(st.integers(0, 100), st.lists(commands, max_size=40))
def test_any_command_sequence_keeps_the_invariants(initial: int, sequence: list) -> None:  # type: ignore[type-arg]
    product = new_product(stock=initial)
    for kind, value in sequence:
        before = product
        try:
            if kind == "adjust":
                product, event = product.adjust_stock(value, reason=None, now=NOW)
            elif kind == "price":
                product, event = product.change_price(value, now=NOW)
            elif kind == "rename":
                product, event = product.update_details({"name": value}, now=NOW)
            else:
                product, event = product.discontinue(reason=None, now=NOW)
        except (InvalidValue, InsufficientStock, ProductDiscontinued, StockLimitExceeded):
            assert product is before  # a rejected command changes nothing
            continue
        assert product.stock >= 0
        assert product.price >= 0
        if event is None:
            assert product.version == before.version
        else:
            assert product.version == before.version + 1
            assert product.to_state().version == product.version
