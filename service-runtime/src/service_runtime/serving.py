"""Logging set-up and the uvicorn runner shared by the HTTP services."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn
from fastapi import FastAPI


def configure_logging(level: str | None = None) -> None:
    """One line per record on stderr, level from LOG_LEVEL."""
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # aiokafka logs every reconnect attempt at ERROR; its retries are expected during outages.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run an app with uvloop and httptools; uvicorn handles SIGTERM with a graceful shutdown."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )
