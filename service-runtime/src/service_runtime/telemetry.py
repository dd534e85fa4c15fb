"""OpenTelemetry tracing: one tracer provider per process, exporting OTLP when configured.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
and `OTEL_SDK_DISABLED` is not `true`; otherwise the API's no-op provider stays and a span costs
next to nothing. Everything else is the SDK's standard configuration from the environment
(`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`, ...).

A database call made outside any request or message (a health probe, the relay's polling, the
projector's category refresh) would be a trace of its own on every tick; the sampler drops those
root client spans, and samples the rest as the environment says.

A command's trace crosses processes as a W3C `traceparent`: the command service stores its
handler's context in the outbox row, the relay publishes each row in a span that is its child
and puts its own context in the Kafka message, and the projector applies the message in a span
that is a child of that.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from fastapi import FastAPI

# The OpenTelemetry variables a service reads (the SDK's own, and those this module checks).
ENVIRONMENT = frozenset(
    {
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    }
)
_PROPAGATOR = TraceContextTextMapPropagator()
_enabled = False


def tracing_requested() -> bool:
    """Whether the environment asks for traces to be exported."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing(service: str) -> bool:
    """Install the SDK's tracer provider exporting OTLP over HTTP, if the environment asks.

    Returns whether tracing is on. `service` is the `service.name` unless `OTEL_SERVICE_NAME`
    names another.
    """
    global _enabled
    if not tracing_requested():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(
        resource=resource, sampler=NoOrphanClientSpans(_get_from_env_or_default())
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def tracing_enabled() -> bool:
    """Whether `configure_tracing` installed an exporting provider in this process."""
    return _enabled


class NoOrphanClientSpans(Sampler):
    """Drops client spans that start a trace; samples every other span as `delegate` does."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClientSpans{{{self._delegate.get_description()}}}"


def context_of(traceparent: str | bytes | None) -> Context | None:
    """The remote parent a W3C traceparent names, or None when there is none (or it is bad)."""
    if not traceparent:
        return None
    value = traceparent.decode("latin-1") if isinstance(traceparent, bytes) else traceparent
    context = _PROPAGATOR.extract({"traceparent": value})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def traceparent_of(span: trace.Span | None = None) -> str | None:
    """The W3C traceparent of `span` (default: the current span), None if it has no context."""
    target = span if span is not None else trace.get_current_span()
    if not target.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(target))
    return carrier.get("traceparent")


def instrument_app(app: FastAPI) -> None:
    """A server span per request (probes and scrapes left out), when tracing is on."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="/healthz,/readyz,/metrics",
        exclude_spans=["receive", "send"],  # one span per ASGI message says nothing more
    )


def instrument_drivers(*drivers: Literal["asyncpg", "pymongo"]) -> None:
    """A client span per database call made inside a traced request or message."""
    if not _enabled:
        return
    if "asyncpg" in drivers:
        _instrument_recorded_asyncpg_calls()
    if "pymongo" in drivers:
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

        PymongoInstrumentor().instrument()


def _instrument_recorded_asyncpg_calls() -> None:
    """asyncpg's instrumentation, skipped for calls outside a recording span.

    Such a call's span would be dropped anyway (an unsampled parent's child is unsampled, and
    `NoOrphanClientSpans` drops a client span without a parent), but the instrumentation
    would still build its name and attributes on every statement: at a 1% sample that was a
    few percent of the command service's CPU for nothing.
    """
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    def recorded_only(wrapper: Any) -> Any:
        async def skipping(self: Any, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not trace.get_current_span().is_recording():
                return await func(*args, **kwargs)
            return await wrapper(self, func, instance, args, kwargs)

        return skipping

    class RecordedCalls(AsyncPGInstrumentor):
        _do_execute = recorded_only(AsyncPGInstrumentor._do_execute)
        _do_cursor_execute = recorded_only(AsyncPGInstrumentor._do_cursor_execute)
        _do_prepared_execute = recorded_only(AsyncPGInstrumentor._do_prepared_execute)

    RecordedCalls().instrument()  # type: ignore[no-untyped-call]
