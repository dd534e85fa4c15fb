"""Catalog events: the envelope every message carries, one model per event type.

Two aggregates, one topic each: products on `catalog.products.v1`, reviews on
`catalog.reviews.v1`; both keyed by the product id. Envelope schema 2 added `aggregate_type`
and `actor`; the codec upcasts schema-1 envelopes (products only existed then).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from catalog_contracts.money import Price

EVENTS_TOPIC = "catalog.products.v1"
REVIEWS_TOPIC = "catalog.reviews.v1"
CONTENT_TYPE = "application/json"
# The envelope's schema version writers emit today.
ENVELOPE_SCHEMA_VERSION = 2

AggregateType: TypeAlias = Literal["product", "review"]
ProductStatus: TypeAlias = Literal["active", "discontinued"]
ReviewStatus: TypeAlias = Literal["published", "removed"]
PRODUCT_EVENT_TYPES: tuple[str, ...] = (
    "ProductCreated",
    "ProductDetailsUpdated",
    "ProductPriceChanged",
    "ProductStockAdjusted",
    "ProductDiscontinued",
)
REVIEW_EVENT_TYPES: tuple[str, ...] = ("ReviewSubmitted", "ReviewRemoved")
EVENT_TYPES: tuple[str, ...] = PRODUCT_EVENT_TYPES + REVIEW_EVENT_TYPES
EventType: TypeAlias = Literal[
    "ProductCreated",
    "ProductDetailsUpdated",
    "ProductPriceChanged",
    "ProductStockAdjusted",
    "ProductDiscontinued",
    "ReviewSubmitted",
    "ReviewRemoved",
]
# Each aggregate type's topic (dead letters: the same name with `.dlq`).
TOPICS: dict[str, str] = {"product": EVENTS_TOPIC, "review": REVIEWS_TOPIC}


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

    # Serialized documents always carry defaulted fields, so the schemas list them as required.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


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


class ReviewState(Contract):
    """The whole review after a change."""

    id: UUID
    product_id: UUID
    rating: int = Field(ge=1, le=5)
    title: str
    body: str | None
    author: str
    status: ReviewStatus
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


class ReviewSubmittedData(Contract):
    product_id: UUID
    rating: int = Field(ge=1, le=5)
    title: str
    body: str | None
    author: str


class ReviewRemovedData(Contract):
    reason: str | None = None


class _Envelope(Contract):
    event_id: UUID
    schema_version: int = Field(ge=1)
    aggregate_id: UUID
    aggregate_version: int = Field(ge=1)
    occurred_at: Timestamp
    # Who caused the change: the `sub` of the caller's token; null before authentication
    # existed and for system changes.
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


class _ProductEnvelope(_Envelope):
    aggregate_type: Literal["product"] = "product"
    state: ProductState


class _ReviewEnvelope(_Envelope):
    """A review's event: `aggregate_id` is the review's id, the message key its product's."""

    aggregate_type: Literal["review"] = "review"
    state: ReviewState


class ProductCreated(_ProductEnvelope):
    event_type: Literal["ProductCreated"] = "ProductCreated"
    data: ProductCreatedData


class ProductDetailsUpdated(_ProductEnvelope):
    event_type: Literal["ProductDetailsUpdated"] = "ProductDetailsUpdated"
    data: ProductDetailsUpdatedData


class ProductPriceChanged(_ProductEnvelope):
    event_type: Literal["ProductPriceChanged"] = "ProductPriceChanged"
    data: ProductPriceChangedData


class ProductStockAdjusted(_ProductEnvelope):
    event_type: Literal["ProductStockAdjusted"] = "ProductStockAdjusted"
    data: ProductStockAdjustedData


class ProductDiscontinued(_ProductEnvelope):
    event_type: Literal["ProductDiscontinued"] = "ProductDiscontinued"
    data: ProductDiscontinuedData


class ReviewSubmitted(_ReviewEnvelope):
    event_type: Literal["ReviewSubmitted"] = "ReviewSubmitted"
    data: ReviewSubmittedData


class ReviewRemoved(_ReviewEnvelope):
    event_type: Literal["ReviewRemoved"] = "ReviewRemoved"
    data: ReviewRemovedData


ProductEvent: TypeAlias = Annotated[
    ProductCreated
    | ProductDetailsUpdated
    | ProductPriceChanged
    | ProductStockAdjusted
    | ProductDiscontinued,
    Field(discriminator="event_type"),
]
ReviewEvent: TypeAlias = Annotated[
    ReviewSubmitted | ReviewRemoved, Field(discriminator="event_type")
]
# Any event of the catalog, as the codec decodes it.
CatalogEvent: TypeAlias = Annotated[
    ProductCreated
    | ProductDetailsUpdated
    | ProductPriceChanged
    | ProductStockAdjusted
    | ProductDiscontinued
    | ReviewSubmitted
    | ReviewRemoved,
    Field(discriminator="event_type"),
]
PRODUCT_EVENT_CLASSES = (
    ProductCreated,
    ProductDetailsUpdated,
    ProductPriceChanged,
    ProductStockAdjusted,
    ProductDiscontinued,
)
REVIEW_EVENT_CLASSES = (ReviewSubmitted, ReviewRemoved)

EVENT_MODELS: dict[str, type[_ProductEnvelope] | type[_ReviewEnvelope]] = {
    "ProductCreated": ProductCreated,
    "ProductDetailsUpdated": ProductDetailsUpdated,
    "ProductPriceChanged": ProductPriceChanged,
    "ProductStockAdjusted": ProductStockAdjusted,
    "ProductDiscontinued": ProductDiscontinued,
    "ReviewSubmitted": ReviewSubmitted,
    "ReviewRemoved": ReviewRemoved,
}

# The schema version writers emit today, per event type: every event is in envelope schema 2.
CURRENT_SCHEMA_VERSION: dict[str, int] = dict.fromkeys(EVENT_TYPES, ENVELOPE_SCHEMA_VERSION)


def message_key(event: CatalogEvent) -> UUID:
    """The Kafka key of an event: its product's id, for a review's events too."""
    if isinstance(event, ReviewSubmitted | ReviewRemoved):
        return event.state.product_id
    return event.aggregate_id


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
