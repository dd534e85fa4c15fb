"""Liveness, readiness and Prometheus endpoints every service serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from catalog_contracts.problems import problem
from service_runtime.problems import problem_response

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]


def health_router(
    registry: CollectorRegistry, checks: dict[str, ReadinessCheck], *, timeout: float = 2.0
) -> APIRouter:
    """`/healthz` (the process answers), `/readyz` (its dependencies answer), `/metrics`."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        failures = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout)
            except Exception as exc:  # any failure means not ready
                failures[name] = f"{type(exc).__name__}: {exc}"[:300]
        if failures:
            detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
            return problem_response(
                problem(503, "not-ready", detail, instance=request.url.path, checks=failures),
                {"Retry-After": "1"},
            )
        return Response(b'{"status":"ready"}', media_type="application/json")

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
