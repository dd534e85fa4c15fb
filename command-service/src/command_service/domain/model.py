"""The Product aggregate: enforces the invariants and says which event each change records.

Pure: imports only the standard library and the contracts. A product is immutable; every
change returns the new product and the event it produced, so a rejected command changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from catalog_contracts.events import (
    Contract,
    ProductCreatedData,
    ProductDetailsUpdatedData,
    ProductDiscontinuedData,
    ProductPriceChangedData,
    ProductState,
    ProductStatus,
    ProductStockAdjustedData,
)
from catalog_contracts.money import PriceError, parse_price
from command_service.domain.errors import (
    InsufficientStock,
    InvalidValue,
    ProductDiscontinued,
    StockLimitExceeded,
)

NAME_MAX = 200
DESCRIPTION_MAX = 5000
CATEGORY_MAX = 100
REASON_MAX = 500
STOCK_LIMIT = 1_000_000_000

DetailField = Literal["name", "description", "category"]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event a change produced, before the application layer gives it an envelope."""

    event_type: str
    data: Contract


def validate_text(field: str, value: str) -> str:
    """Text must be storable: NUL characters and lone surrogates are not valid UTF-8 text."""
    if "\x00" in value:
        raise InvalidValue(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(field, "must be valid Unicode text (no lone surrogates)") from None
    return value


def validate_name(value: str) -> str:
    if not 1 <= len(value) <= NAME_MAX or not value.strip():
        raise InvalidValue("name", f"must be 1 to {NAME_MAX} characters and not blank")
    return validate_text("name", value)


def validate_description(value: str | None) -> str | None:
    if value is not None and len(value) > DESCRIPTION_MAX:
        raise InvalidValue("description", f"must be at most {DESCRIPTION_MAX} characters")
    return None if value is None else validate_text("description", value)


def validate_category(value: str) -> str:
    if not 1 <= len(value) <= CATEGORY_MAX or not value.strip():
        raise InvalidValue("category", f"must be 1 to {CATEGORY_MAX} characters and not blank")
    return validate_text("category", value)


def validate_price(value: Any) -> Decimal:
    try:
        return parse_price(value)
    except PriceError as exc:
        raise InvalidValue("price", str(exc)) from None


def validate_stock(value: int) -> int:
    if not 0 <= value <= STOCK_LIMIT:
        raise InvalidValue("stock", f"must be between 0 and {STOCK_LIMIT}")
    return value


def validate_quantity_change(value: int) -> int:
    if value == 0 or not -STOCK_LIMIT <= value <= STOCK_LIMIT:
        raise InvalidValue(
            "quantity_change", f"must be non-zero and between -{STOCK_LIMIT} and {STOCK_LIMIT}"
        )
    return value


def validate_reason(value: str | None) -> str | None:
    if value is not None and len(value) > REASON_MAX:
        raise InvalidValue("reason", f"must be at most {REASON_MAX} characters")
    return None if value is None else validate_text("reason", value)


@dataclass(frozen=True, slots=True)
class Product:
    """A catalog product as the write model knows it."""

    id: UUID
    name: str
    description: str | None
    category: str
    price: Decimal
    stock: int
    status: ProductStatus
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls,
        *,
        product_id: UUID,
        name: str,
        description: str | None,
        category: str,
        price: Any,
        stock: int,
        now: datetime,
    ) -> tuple[Product, PendingEvent]:
        """A new active product at version 1."""
        product = cls(
            id=product_id,
            name=validate_name(name),
            description=validate_description(description),
            category=validate_category(category),
            price=validate_price(price),
            stock=validate_stock(stock),
            status="active",
            version=1,
            created_at=now,
            updated_at=now,
        )
        data = ProductCreatedData(
            name=product.name,
            description=product.description,
            category=product.category,
            price=product.price,
            stock=product.stock,
        )
        return product, PendingEvent("ProductCreated", data)

    def update_details(
        self, changes: dict[DetailField, str | None], *, now: datetime
    ) -> tuple[Product, PendingEvent | None]:
        """Rename, re-describe or re-categorize; no event when nothing actually changes."""
        self._ensure_active()
        validated: dict[DetailField, str | None] = {}
        for field, value in changes.items():
            if field == "name":
                if value is None:
                    raise InvalidValue("name", "must not be null")
                validated["name"] = validate_name(value)
            elif field == "category":
                if value is None:
                    raise InvalidValue("category", "must not be null")
                validated["category"] = validate_category(value)
            elif field == "description":
                validated["description"] = validate_description(value)
            else:
                raise InvalidValue(str(field), "is not a product detail")
        effective = {f: v for f, v in validated.items() if getattr(self, f) != v}
        if not effective:
            return self, None
        previous = {f: getattr(self, f) for f in effective}
        updates: dict[str, Any] = {str(f): v for f, v in effective.items()} | self._bump(now)
        product = replace(self, **updates)
        data = ProductDetailsUpdatedData(changes=effective, previous=previous)
        return product, PendingEvent("ProductDetailsUpdated", data)

    def change_price(self, price: Any, *, now: datetime) -> tuple[Product, PendingEvent | None]:
        """Set a new price; no event when it equals the current one."""
        self._ensure_active()
        new_price = validate_price(price)
        if new_price == self.price:
            return self, None
        product = replace(self, price=new_price, **self._bump(now))
        data = ProductPriceChangedData(old_price=self.price, new_price=new_price)
        return product, PendingEvent("ProductPriceChanged", data)

    def adjust_stock(
        self, quantity_change: int, *, reason: str | None, now: datetime
    ) -> tuple[Product, PendingEvent]:
        """Add or remove stock; stock never goes below zero nor above the limit."""
        self._ensure_active()
        change = validate_quantity_change(quantity_change)
        reason = validate_reason(reason)
        new_stock = self.stock + change
        if new_stock < 0:
            raise InsufficientStock(self.id, available=self.stock, requested=-change)
        if new_stock > STOCK_LIMIT:
            raise StockLimitExceeded(self.id, limit=STOCK_LIMIT)
        product = replace(self, stock=new_stock, **self._bump(now))
        data = ProductStockAdjustedData(quantity_change=change, new_stock=new_stock, reason=reason)
        return product, PendingEvent("ProductStockAdjusted", data)

    def discontinue(self, *, reason: str | None, now: datetime) -> tuple[Product, PendingEvent]:
        """Take the product off sale for good."""
        self._ensure_active()
        reason = validate_reason(reason)
        product = replace(self, status="discontinued", **self._bump(now))
        return product, PendingEvent("ProductDiscontinued", ProductDiscontinuedData(reason=reason))

    def to_state(self) -> ProductState:
        """The contract view of this product, as events carry it."""
        return ProductState(
            id=self.id,
            name=self.name,
            description=self.description,
            category=self.category,
            price=self.price,
            stock=self.stock,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            version=self.version,
        )

    def _ensure_active(self) -> None:
        if self.status == "discontinued":
            raise ProductDiscontinued(self.id)

    def _bump(self, now: datetime) -> dict[str, Any]:
        # Clocks can step back; updated_at never does.
        return {"version": self.version + 1, "updated_at": max(now, self.updated_at)}
