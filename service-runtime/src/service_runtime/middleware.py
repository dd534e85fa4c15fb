"""ASGI middleware of the HTTP services: request body limit, HTTP metrics, access log."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog_contracts.problems import PROBLEM_CONTENT_TYPE, problem
from service_runtime.logs import bind_request, trace_id

access = logging.getLogger("access")


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answers 413 for bodies over the limit, by Content-Length or by counting what streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._reject(scope, send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        doc = problem(
            413,
            "body-too-large",
            f"request body exceeds {self.max_bytes} bytes",
            instance=scope.get("path"),
        )
        body = orjson.dumps(doc.model_dump(exclude_none=True))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HttpMetrics:
    """Request counts and latencies by method, route template and status."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.service = service


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        headers = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"x-correlation-id", b"x-request-id")
        }
        # The same ids on every log line of this request; the command service's events carry
        # the same correlation id (command_service.api.routes.get_context reads it back).
        bind_request(
            trace_id=trace_id(headers.get("traceparent")),
            correlation_id=headers.get("x-correlation-id")
            or headers.get("x-request-id")
            or uuid.uuid4().hex,
        )

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            m = self.metrics
            took = time.perf_counter() - start
            m.requests.labels(m.service, method, template, str(status)).inc()
            m.latency.labels(m.service, method, template).observe(took)
            if access.isEnabledFor(logging.INFO):
                path = scope["path"]
                access.info(
                    "%s %s %d %.1fms",
                    method,
                    path,
                    status,
                    took * 1000,
                    extra={
                        "fields": {
                            "method": method,
                            "path": path,
                            "status": status,
                            "duration_ms": round(took * 1000, 2),
                        }
                    },
                )
