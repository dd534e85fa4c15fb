"""The projector's spans: each batch's application, in the traces of the commands it applies.

A batch whose messages all continue one trace (one command's event, as when the pipeline is
quiet) is applied in a span of that trace, a child of the relay's publish span, with the
store's writes inside it. A batch of several commands' events is applied in a span of its own,
linked to each message's context; each of those traces then gets an `apply <event type>` span of
the same start and end, linked back to the batch's span, so every command's trace shows when
its event became readable and where the writes are.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

from catalog_contracts.events import CatalogEvent
from service_runtime.telemetry import context_of, tracing_enabled

TRACER = trace.get_tracer("projector")


def _parent(message: ConsumerRecord[bytes, bytes]) -> Context | None:
    for name, value in message.headers or ():
        if name == "traceparent":
            return context_of(value)
    return None


def _attributes(message: ConsumerRecord[bytes, bytes], event: CatalogEvent) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": message.topic,
        "messaging.destination.partition.id": str(message.partition),
        "messaging.kafka.offset": message.offset,
        "catalog.event_type": event.event_type,
        "catalog.aggregate_id": str(event.aggregate_id),
        "catalog.aggregate_version": event.aggregate_version,
    }


@contextlib.contextmanager
def applying(
    messages: Sequence[ConsumerRecord[bytes, bytes]], events: Sequence[CatalogEvent]
) -> Iterator[None]:
    """The spans of applying `events` (decoded from `messages`, in the same order)."""
    if not tracing_enabled() or not events:
        yield
        return
    parents = [_parent(message) for message in messages]
    traces = {
        trace.get_current_span(parent).get_span_context().trace_id
        for parent in parents
        if parent is not None
    }
    if len(traces) <= 1:
        parent = next((p for p in parents if p is not None), None)
        name = f"apply {events[0].event_type}" if len(events) == 1 else "apply batch"
        attributes = _attributes(messages[0], events[0]) if len(events) == 1 else {}
        with TRACER.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={**attributes, "messaging.batch.message_count": len(events)},
        ):
            yield
        return
    links = [
        Link(trace.get_current_span(parent).get_span_context())
        for parent in parents
        if parent is not None
    ]
    started = time.time_ns()
    with TRACER.start_as_current_span(
        "apply batch",
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={"messaging.batch.message_count": len(events)},
        start_time=started,
        end_on_exit=False,
    ) as batch:
        try:
            yield
        finally:
            ended = time.time_ns()
            batch.end(end_time=ended)
    back = [Link(batch.get_span_context())]
    for parent, message, event in zip(parents, messages, events, strict=True):
        if parent is not None:
            TRACER.start_span(
                f"apply {event.event_type}",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=back,
                start_time=started,
                attributes=_attributes(message, event),
            ).end(end_time=ended)
