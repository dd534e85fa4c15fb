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
from catalog_contracts.codec import EventDecodeError, decode_event, encode_event
from catalog_contracts.events import (
    CURRENT_SCHEMA_VERSION,
    ProductCreated,
    ProductCreatedData,
    ProductState,
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
        schema_version=1,
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
    # Pretend ProductCreated is at version 2, which renamed data.stock to data.initial_stock.
    monkeypatch.setitem(CURRENT_SCHEMA_VERSION, "ProductCreated", 2)
    monkeypatch.setattr(codec, "_UPCASTERS", {})

    @codec.register_upcaster("ProductCreated", 1)
    def v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
        document["upcasted"] = True
        return document

    old = orjson.loads(encode_event(created_event()))
    lifted = codec.upcast(old)
    assert lifted["schema_version"] == 2
    assert lifted["upcasted"] is True


def test_missing_upcaster_is_a_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CURRENT_SCHEMA_VERSION, "ProductCreated", 2)
    monkeypatch.setattr(codec, "_UPCASTERS", {})
    with pytest.raises(EventDecodeError) as raised:
        decode_event(encode_event(created_event()))
    assert raised.value.reason == "no_upcaster"


@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_fail_cleanly(payload: bytes) -> None:
    # Anything but a clean EventDecodeError (a crash, a TypeError) fails the test.
    with contextlib.suppress(EventDecodeError):
        decode_event(payload)
