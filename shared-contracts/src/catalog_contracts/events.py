"""Product events: the envelope every message on the events topic carries, one model per type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from catalog_contracts.money import Price

EVENTS_TOPIC = "catalog.products.v1"
CONTENT_TYPE = "application/json"

ProductStatus: TypeAlias = Literal["active", "discontinued"]
EventType: TypeAlias = Literal[
    "ProductCreated",
    "ProductDetailsUpdated",
    "ProductPriceChanged",
    "ProductStockAdjusted",
    "ProductDiscontinued",
]
EVENT_TYPES: tuple[str, ...] = (
    "ProductCreated",
    "ProductDetailsUpdated",
    "ProductPriceChanged",
    "ProductStockAdjusted",
    "ProductDiscontinued",
)


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset")
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with microseconds, so text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Timestamp = Annotated[
    datetime,
    AfterValidator(_require_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]


class Contract(BaseModel):
    """Base of every contract model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ProductState(Contract):
    """The whole product after a change."""

    id: UUID
    name: str
    description: str | None
    category: str
    price: Price
    stock: int
    status: ProductStatus
    created_at: Timestamp
    updated_at: Timestamp
    version: int = Field(ge=1)


class ProductCreatedData(Contract):
    name: str
    description: str | None
    category: str
    price: Price
    stock: int


class ProductDetailsUpdatedData(Contract):
    """New values of the details that changed, and what they were before."""

    changes: dict[Literal["name", "description", "category"], str | None]
    previous: dict[Literal["name", "description", "category"], str | None]


class ProductPriceChangedData(Contract):
    old_price: Price
    new_price: Price


class ProductStockAdjustedData(Contract):
    quantity_change: int
    new_stock: int
    reason: str | None = None


class ProductDiscontinuedData(Contract):
    reason: str | None = None


class _Envelope(Contract):
    event_id: UUID
    schema_version: int = Field(ge=1)
    aggregate_id: UUID
    aggregate_version: int = Field(ge=1)
    occurred_at: Timestamp
    correlation_id: str | None = None
    causation_id: str | None = None
    state: ProductState


class ProductCreated(_Envelope):
    event_type: Literal["ProductCreated"] = "ProductCreated"
    data: ProductCreatedData


class ProductDetailsUpdated(_Envelope):
    event_type: Literal["ProductDetailsUpdated"] = "ProductDetailsUpdated"
    data: ProductDetailsUpdatedData


class ProductPriceChanged(_Envelope):
    event_type: Literal["ProductPriceChanged"] = "ProductPriceChanged"
    data: ProductPriceChangedData


class ProductStockAdjusted(_Envelope):
    event_type: Literal["ProductStockAdjusted"] = "ProductStockAdjusted"
    data: ProductStockAdjustedData


class ProductDiscontinued(_Envelope):
    event_type: Literal["ProductDiscontinued"] = "ProductDiscontinued"
    data: ProductDiscontinuedData


ProductEvent: TypeAlias = Annotated[
    ProductCreated
    | ProductDetailsUpdated
    | ProductPriceChanged
    | ProductStockAdjusted
    | ProductDiscontinued,
    Field(discriminator="event_type"),
]

EVENT_MODELS: dict[str, type[_Envelope]] = {
    "ProductCreated": ProductCreated,
    "ProductDetailsUpdated": ProductDetailsUpdated,
    "ProductPriceChanged": ProductPriceChanged,
    "ProductStockAdjusted": ProductStockAdjusted,
    "ProductDiscontinued": ProductDiscontinued,
}

# The schema version writers emit today, per event type.
CURRENT_SCHEMA_VERSION: dict[str, int] = dict.fromkeys(EVENT_TYPES, 1)


def event_headers(event: Any, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers of an event."""
    headers = [
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers
