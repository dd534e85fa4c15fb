"""JSON log lines: time, level, service, logger, message, and the request's trace and
correlation ids, so one command's lines can be joined across the services.

`configure_logging(service)` installs it on the root logger (`LOG_FORMAT=text` gives the
plain format instead, for a human at a terminal). HTTP services bind the ids of each request
with `bind_request`; `MetricsMiddleware` does it and writes the access log.
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The ids of the request (or message) being handled: trace_id, correlation_id.
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("log_context", default={})  # noqa: B039

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def bind_request(**ids: str | None) -> None:
    """Attach ids to every log line of the current task (None values are left out)."""
    _CONTEXT.set({key: value for key, value in ids.items() if value})


def bound(key: str) -> str | None:
    """An id bound to the current task."""
    return _CONTEXT.get().get(key)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent header (version-traceid-spanid-flags)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    return parts[1]


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
            **_CONTEXT.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(service: str, level: str | None = None) -> None:
    """JSON lines (or text, with LOG_FORMAT=text) on stderr, level from LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LOG_FORMAT", "json").lower() == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        handler.setFormatter(JsonFormatter(service))
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        handlers=[handler],
        force=True,
    )
    # aiokafka logs every reconnect attempt at ERROR; its retries are expected during outages.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
