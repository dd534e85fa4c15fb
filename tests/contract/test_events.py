"""Event contracts: committed schemas match the models, the codec round-trips, upcasting works."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog_contracts import codec
from catalog_contracts.codec import (
    EventDecodeError,
    decode_event,
    decode_product_event,
    encode_event,
)
from catalog_contracts.events import (
    CURRENT_SCHEMA_VERSION,
    PRODUCT_EVENT_TYPES,
    ProductCreated,
    ProductCreatedData,
    ProductPriceChanged,
    ProductState,
    ReviewRemoved,
    ReviewRemovedData,
    ReviewState,
    ReviewSubmitted,
    ReviewSubmittedData,
    message_key,
)
from catalog_contracts.schema import generate_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared-contracts" / "schemas"
NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def created_event() -> ProductCreated:
    product_id = uuid4()
    state = ProductState(
        id=product_id,
        name="Laptop",
        description=None,
        category="computers",
        price="999.99",
        stock=5,
        status="active",
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )
    data = ProductCreatedData(
        name="Laptop", description=None, category="computers", price="999.99", stock=5
    )
    return ProductCreated(
        event_id=uuid4(),
        schema_version=2,
        aggregate_id=product_id,
        aggregate_version=1,
        occurred_at=NOW,
        data=data,
        state=state,
    )


def test_committed_schemas_match_the_models() -> None:
    generated = generate_schemas()
    committed = {
        str(p.relative_to(SCHEMA_DIR)): json.loads(p.read_text())
        for p in SCHEMA_DIR.rglob("*.json")
    }
    assert sorted(committed) == sorted(generated), "run `make schemas` and commit the result"
    for name, schema in generated.items():
        assert committed[name] == json.loads(json.dumps(schema)), (
            f"{name} drifted from the models; run `make schemas`"
        )


def test_round_trip_keeps_every_field() -> None:
    event = created_event()
    wire = encode_event(event)
    document = orjson.loads(wire)
    assert document["state"]["price"] == "999.99"
    assert document["occurred_at"] == "2026-11-26T12:00:00.123456Z"
    assert document["event_type"] == "ProductCreated"
    assert decode_event(wire) == event


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\x00garbage", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"event_type": "ProductExploded", "schema_version": 1}', "unknown_event_type"),
        (b'{"event_type": "ProductCreated", "schema_version": 99}', "unsupported_schema_version"),
        (b'{"event_type": "ProductCreated", "schema_version": 1}', "schema_validation"),
        (None, "empty"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(EventDecodeError) as raised:
        decode_event(payload)
    assert raised.value.reason == reason


def test_price_as_float_in_an_event_is_read_exactly() -> None:
    document = orjson.loads(encode_event(created_event()))
    document["state"]["price"] = "1.10"
    assert decode_event(orjson.dumps(document)).state.price.as_tuple().exponent == -2


def test_upcaster_lifts_an_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend ProductCreated is at version 3, which renamed data.stock to data.initial_stock.
    monkeypatch.setitem(CURRENT_SCHEMA_VERSION, "ProductCreated", 3)
    monkeypatch.setattr(codec, "_UPCASTERS", {})

    @codec.register_upcaster("ProductCreated", 2)
    def v2_to_v3(document: dict[str, Any]) -> dict[str, Any]:
        document["upcasted"] = True
        return document

    old = orjson.loads(encode_event(created_event()))
    lifted = codec.upcast(old)
    assert lifted["schema_version"] == 3
    assert lifted["upcasted"] is True


def test_missing_upcaster_is_a_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CURRENT_SCHEMA_VERSION, "ProductCreated", 3)
    monkeypatch.setattr(codec, "_UPCASTERS", {})
    with pytest.raises(EventDecodeError) as raised:
        decode_event(encode_event(created_event()))
    assert raised.value.reason == "no_upcaster"


@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_fail_cleanly(payload: bytes) -> None:
    # Anything but a clean EventDecodeError (a crash, a TypeError) fails the test.
    with contextlib.suppress(EventDecodeError):
        decode_event(payload)


# Envelope schema 1, byte for byte: encoded by the codec of 6e3c2c8 (the last commit before
# envelope schema 2) from a ProductPriceChanged model of that commit. No aggregate_type, no actor.
SCHEMA_1_PRICE_CHANGED = (
    b'{"event_id":"01a1f3c2-6b1e-7d3a-9c4e-2f1d8b7a6c5e","schema_version":1,'
    b'"aggregate_id":"01a1f3c1-0a2b-7c3d-8e4f-5a6b7c8d9e0f","aggregate_version":3,'
    b'"occurred_at":"2026-11-26T12:00:01.000000Z","correlation_id":"c-9","causation_id":null,'
    b'"state":{"id":"01a1f3c1-0a2b-7c3d-8e4f-5a6b7c8d9e0f","name":"Laptop","description":null,'
    b'"category":"computers","price":"899.00","stock":4,"status":"active",'
    b'"created_at":"2026-11-26T12:00:00.000000Z","updated_at":"2026-11-26T12:00:01.000000Z",'
    b'"version":3},"event_type":"ProductPriceChanged",'
    b'"data":{"old_price":"999.99","new_price":"899.00"}}'
)


def test_a_schema_1_envelope_is_upcast_to_schema_2() -> None:
    event = decode_event(SCHEMA_1_PRICE_CHANGED)
    assert isinstance(event, ProductPriceChanged)
    assert event.schema_version == 2
    assert event.aggregate_type == "product"
    assert event.actor is None
    assert str(event.data.new_price) == "899.00"
    assert event.correlation_id == "c-9"
    # Re-encoded, it is a schema-2 envelope that decodes to itself.
    again = orjson.loads(encode_event(event))
    assert (again["schema_version"], again["aggregate_type"], again["actor"]) == (
        2,
        "product",
        None,
    )
    assert decode_event(encode_event(event)) == event


def test_every_schema_1_product_event_has_an_upcaster() -> None:
    for event_type in PRODUCT_EVENT_TYPES:
        assert (event_type, 1) in codec._UPCASTERS, event_type


def review_event(event_type: str = "ReviewSubmitted") -> ReviewSubmitted | ReviewRemoved:
    review_id, product_id = uuid4(), uuid4()
    status = "published" if event_type == "ReviewSubmitted" else "removed"
    state = ReviewState(
        id=review_id,
        product_id=product_id,
        rating=4,
        title="Solid",
        body=None,
        author="ada",
        status=status,
        created_at=NOW,
        updated_at=NOW,
        version=1 if status == "published" else 2,
    )
    if event_type == "ReviewSubmitted":
        return ReviewSubmitted(
            event_id=uuid4(),
            schema_version=2,
            aggregate_id=review_id,
            aggregate_version=1,
            occurred_at=NOW,
            actor="ada",
            data=ReviewSubmittedData(
                product_id=product_id, rating=4, title="Solid", body=None, author="ada"
            ),
            state=state,
        )
    return ReviewRemoved(
        event_id=uuid4(),
        schema_version=2,
        aggregate_id=review_id,
        aggregate_version=2,
        occurred_at=NOW,
        data=ReviewRemovedData(reason="spam"),
        state=state,
    )


@pytest.mark.parametrize("event_type", ["ReviewSubmitted", "ReviewRemoved"])
def test_review_events_round_trip_and_are_keyed_by_their_product(event_type: str) -> None:
    event = review_event(event_type)
    document = orjson.loads(encode_event(event))
    assert document["aggregate_type"] == "review"
    assert decode_event(encode_event(event)) == event
    assert message_key(event) == event.state.product_id != event.aggregate_id


def test_a_product_event_is_keyed_by_its_own_id() -> None:
    event = created_event()
    assert message_key(event) == event.aggregate_id


def test_a_review_event_on_the_products_topic_is_refused() -> None:
    with pytest.raises(EventDecodeError) as raised:
        decode_product_event(encode_event(review_event()))
    assert raised.value.reason == "unexpected_aggregate"


def test_there_is_no_schema_1_review_event() -> None:
    document = orjson.loads(encode_event(review_event()))
    document["schema_version"] = 1
    with pytest.raises(EventDecodeError) as raised:
        decode_event(orjson.dumps(document))
    assert raised.value.reason == "no_upcaster"


def test_a_review_rating_is_one_to_five() -> None:
    document = orjson.loads(encode_event(review_event()))
    document["state"]["rating"] = 6
    with pytest.raises(EventDecodeError) as raised:
        decode_event(orjson.dumps(document))
    assert raised.value.reason == "schema_validation"
