"""The one codec for events: models to UTF-8 JSON bytes with orjson and back, with upcasting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from catalog_contracts.events import (
    CURRENT_SCHEMA_VERSION,
    PRODUCT_EVENT_CLASSES,
    PRODUCT_EVENT_TYPES,
    CatalogEvent,
    ProductEvent,
)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_EVENT_ADAPTER: TypeAdapter[CatalogEvent] = TypeAdapter(CatalogEvent)
# (event_type, schema_version) -> function lifting that version's raw document one version up.
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class EventDecodeError(ValueError):
    """Bytes that are not a valid event; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns version `from_version` of an event into the next version."""

    def decorate(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {key} is already registered")
        _UPCASTERS[key] = fn
        return fn

    return decorate


def encode_event(event: CatalogEvent) -> bytes:
    """Serialize an event to its wire form."""
    return orjson.dumps(event.model_dump(mode="json"))


def event_to_document(event: CatalogEvent) -> dict[str, Any]:
    """The JSON-compatible document of an event (what the outbox stores)."""
    return event.model_dump(mode="json")


def upcast(document: dict[str, Any]) -> dict[str, Any]:
    """Lift a raw event document to the schema version this code reads."""
    event_type = document.get("event_type")
    version = document.get("schema_version")
    if not isinstance(event_type, str) or event_type not in CURRENT_SCHEMA_VERSION:
        raise EventDecodeError("unknown_event_type", f"unknown event_type {event_type!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EventDecodeError("invalid_schema_version", f"invalid schema_version {version!r}")
    current = CURRENT_SCHEMA_VERSION[event_type]
    if version > current:
        raise EventDecodeError(
            "unsupported_schema_version",
            f"{event_type} schema_version {version} is newer than {current}",
        )
    while version < current:
        upcaster = _UPCASTERS.get((event_type, version))
        if upcaster is None:
            raise EventDecodeError(
                "no_upcaster", f"no upcaster from {event_type} schema_version {version}"
            )
        document = upcaster(document)
        version += 1
        document["schema_version"] = version
    return document


def decode_document(document: Any) -> CatalogEvent:
    """Validate a JSON-compatible event document (upcasting it first)."""
    if not isinstance(document, dict):
        raise EventDecodeError("not_an_object", "an event must be a JSON object")
    document = upcast(dict(document))
    try:
        return _EVENT_ADAPTER.validate_python(document)
    except ValidationError as exc:
        raise EventDecodeError("schema_validation", _summarize(exc)) from None


def decode_event(payload: bytes | None) -> CatalogEvent:
    """Parse wire bytes into an event, or raise EventDecodeError saying why not."""
    if payload is None:
        raise EventDecodeError("empty", "message has no value")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError("invalid_json", str(exc)) from None
    return decode_document(document)


def decode_product_event(payload: bytes | None) -> ProductEvent:
    """Like `decode_event`, for a reader of the products topic: a review's event is an error."""
    event = decode_event(payload)
    if not isinstance(event, PRODUCT_EVENT_CLASSES):
        raise EventDecodeError(
            "unexpected_aggregate", f"{event.event_type} is a {event.aggregate_type}'s event"
        )
    return event


def _envelope_1_to_2(document: dict[str, Any]) -> dict[str, Any]:
    """Envelope schema 1 knew one aggregate, the product, and no actor."""
    return {**document, "aggregate_type": "product", "actor": None}


for _event_type in PRODUCT_EVENT_TYPES:
    register_upcaster(_event_type, 1)(_envelope_1_to_2)


def _summarize(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)
