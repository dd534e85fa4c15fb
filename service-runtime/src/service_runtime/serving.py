"""The uvicorn runner shared by the HTTP services (their logging: service_runtime.logs)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from service_runtime.telemetry import instrument_app

# How long an idle keep-alive connection stays open. Longer than the gateway's upstream
# `keepalive_timeout` (60 s), so the gateway, not the service, closes an idle connection:
# uvicorn's default of 5 s let nginx send a request on a connection uvicorn was closing, and
# the request was reset (502 for a POST, measured in the bench's end-to-end stage).
KEEP_ALIVE_SECONDS = 75


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run an app with uvloop and httptools; uvicorn handles SIGTERM with a graceful shutdown.

    With tracing on (service_runtime.telemetry), each request is a server span.
    """
    instrument_app(app)
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )
