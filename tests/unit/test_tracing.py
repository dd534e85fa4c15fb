"""Our spans: the sampler, the traceparent helpers, and how one command's trace crosses the
command service, the outbox, the relay and the projector (the e2e test finds it in Jaeger)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from aiokafka.structs import RecordMetadata, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind, StatusCode

from catalog_contracts.events import CatalogEvent, event_headers
from command_service.handlers import CommandHandlers, CreateProduct, RequestContext
from command_service.relay.relay import _end_publish_span, _publish_span
from projector.tracing import applying
from service_runtime import telemetry
from tests.fixtures.events import ProductHistory
from tests.fixtures.fakes import FakeStore, FakeUnitOfWorkFactory
from tests.fixtures.tracing import Spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


# --------------------------------------------------------------------------- the helpers


def test_the_sampler_drops_client_spans_that_would_start_a_trace() -> None:
    sampler = telemetry.NoOrphanClientSpans(ALWAYS_ON)
    orphan = sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT)
    assert orphan.decision is Decision.DROP
    request = sampler.should_sample(None, 1, "POST /api/v1/products", SpanKind.SERVER)
    assert request.decision is Decision.RECORD_AND_SAMPLE
    inside = sampler.should_sample(telemetry.context_of(PARENT), 1, "INSERT", SpanKind.CLIENT)
    assert inside.decision is Decision.RECORD_AND_SAMPLE
    assert sampler.get_description() == "NoOrphanClientSpans{AlwaysOnSampler}"


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE_ID}-{'0' * 16}-01"],
)
def test_a_missing_or_invalid_traceparent_is_no_parent(value: str | None) -> None:
    assert telemetry.context_of(value) is None


def test_a_traceparent_round_trips_through_a_context() -> None:
    context = telemetry.context_of(PARENT.encode())
    assert context is not None
    span = trace.get_current_span(context)
    assert telemetry.traceparent_of(span) == PARENT
    assert telemetry.traceparent_of(trace.INVALID_SPAN) is None


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not telemetry.tracing_requested()
    assert not telemetry.configure_tracing("anything")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    assert telemetry.tracing_requested()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not telemetry.tracing_requested()


# --------------------------------------------------------------------------- command service


async def test_the_outbox_row_continues_the_commands_span(spans: Spans) -> None:
    store = FakeStore()
    handlers = CommandHandlers(FakeUnitOfWorkFactory(store))
    command = CreateProduct("Lamp", None, "lighting", Decimal("9.90"), 3)
    # As inside the request's server span, which continues the caller's trace.
    token = otel_context.attach(telemetry.context_of(PARENT) or otel_context.Context())
    try:
        await handlers.create_product(command, RequestContext(traceparent=PARENT))
    finally:
        otel_context.detach(token)
    [transaction] = spans.named("transaction")
    [handler] = spans.named("command create_product")
    assert parent_id(transaction) == handler.context.span_id
    assert parent_id(handler) == int("00f067aa0ba902b7", 16)
    assert handler.context.trace_id == int(TRACE_ID, 16)
    [row] = store.outbox
    context = transaction.context
    assert row.traceparent == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


async def test_without_tracing_the_outbox_keeps_the_callers_traceparent() -> None:
    store = FakeStore()
    handlers = CommandHandlers(FakeUnitOfWorkFactory(store))
    command = CreateProduct("Lamp", None, "lighting", Decimal("9.90"), 3)
    await handlers.create_product(command, RequestContext(traceparent=PARENT))
    assert [row.traceparent for row in store.outbox] == [PARENT]


# --------------------------------------------------------------------------- relay


def outbox_row(traceparent: str | None, waited: float = 0.25) -> dict[str, Any]:
    headers = {"event_type": "ProductCreated"}
    if traceparent:
        headers["traceparent"] = traceparent
    return {
        "id": 42,
        "message_key": "9d1c4f0e-0000-4000-8000-000000000001",
        "event_type": "ProductCreated",
        "headers": headers,
        "created_at": datetime.now(UTC) - timedelta(seconds=waited),
    }


async def test_a_publication_is_a_child_of_the_command_with_its_wait(spans: Spans) -> None:
    span = _publish_span(outbox_row(PARENT), "catalog.products.v1")
    assert span is not None
    sent: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
    sent.set_result(
        RecordMetadata("catalog.products.v1", 3, TopicPartition("t", 3), 17, -1, -1, -1)
    )
    _end_publish_span(span, sent)
    [published] = spans.named("publish catalog.products.v1")
    assert published.kind is SpanKind.PRODUCER
    assert published.context.trace_id == int(TRACE_ID, 16)
    assert parent_id(published) == int("00f067aa0ba902b7", 16)
    attributes = published.attributes or {}
    assert attributes["outbox.wait_ms"] >= 250
    assert attributes["outbox.id"] == 42
    assert attributes["messaging.destination.partition.id"] == "3"
    assert attributes["messaging.kafka.offset"] == 17


async def test_a_refused_publication_is_an_error_and_a_row_without_trace_has_no_span(
    spans: Spans,
) -> None:
    assert _publish_span(outbox_row(None), "catalog.products.v1") is None
    span = _publish_span(outbox_row(PARENT), "catalog.products.v1")
    assert span is not None
    sent: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
    sent.set_exception(TimeoutError("no broker"))
    _end_publish_span(span, sent)
    [published] = spans.finished()
    assert published.status.status_code is StatusCode.ERROR


# --------------------------------------------------------------------------- projector


def message(event: CatalogEvent, traceparent: str | None, offset: int) -> ConsumerRecord[Any, Any]:
    headers = [(n, v) for n, v in event_headers(event, traceparent)]
    return ConsumerRecord("catalog.products.v1", 0, offset, 0, 0, None, b"", None, 0, 0, headers)


def apply_span(spans: list[ReadableSpan], trace_id: str) -> ReadableSpan:
    [found] = [s for s in spans if s.context.trace_id == int(trace_id, 16)]
    return found


def test_one_commands_batch_is_applied_in_its_trace(spans: Spans) -> None:
    event = ProductHistory().events[0]
    with applying([message(event, PARENT, 5)], [event]):
        trace.get_tracer("test").start_span("mongodb update").end()
    applied = spans.named("apply ProductCreated")
    [span] = applied
    assert span.kind is SpanKind.CONSUMER
    assert parent_id(span) == int("00f067aa0ba902b7", 16)
    assert (span.attributes or {})["messaging.kafka.offset"] == 5
    [write] = spans.named("mongodb update")
    assert parent_id(write) == span.context.span_id


def test_several_commands_batch_is_linked_from_each_trace(spans: Spans) -> None:
    first, second = ProductHistory().events[0], ProductHistory().events[0]
    batch = [message(first, PARENT, 1), message(second, OTHER, 2)]
    with applying(batch, [first, second]):
        pass
    [whole] = spans.named("apply batch")
    assert {link.context.trace_id for link in whole.links} == {
        int(TRACE_ID, 16),
        int(OTHER.split("-")[1], 16),
    }
    each = spans.named("apply ProductCreated")
    for trace_id in (TRACE_ID, OTHER.split("-")[1]):
        span = apply_span(each, trace_id)
        assert [link.context.span_id for link in span.links] == [whole.context.span_id]
        assert (span.start_time, span.end_time) == (whole.start_time, whole.end_time)


def test_without_tracing_a_batch_makes_no_span() -> None:
    event = ProductHistory().events[0]
    with applying([message(event, PARENT, 1)], [event]):
        assert not trace.get_current_span().get_span_context().is_valid
