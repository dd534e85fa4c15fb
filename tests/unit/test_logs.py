"""JSON log lines carry the service, the level, the message and the request's ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from service_runtime.logs import JsonFormatter, bind_request, bound, trace_id

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def record(message: str, *args: object, exc: bool = False, **fields: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    made = logging.LogRecord("catalog.test", logging.WARNING, __file__, 1, message, args, info)
    if fields:
        made.fields = fields
    return made


def test_a_line_is_one_json_object_with_the_request_ids() -> None:
    bind_request(trace_id=trace_id(TRACEPARENT), correlation_id="corr-1")
    line = JsonFormatter("command-service").format(record("applied %d", 3, status=201))
    document = json.loads(line)
    assert "\n" not in line
    assert document["service"] == "command-service"
    assert (document["level"], document["logger"], document["message"]) == (
        "WARNING",
        "catalog.test",
        "applied 3",
    )
    assert document["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (document["correlation_id"], document["status"]) == ("corr-1", 201)
    assert document["time"].endswith("+00:00")
    assert bound("correlation_id") == "corr-1"


def test_exceptions_stay_on_the_line() -> None:
    bind_request()
    document = json.loads(JsonFormatter("projector").format(record("failed", exc=True)))
    assert "ValueError: boom" in document["exception"]
    assert "trace_id" not in document


@pytest.mark.parametrize(
    "header", [None, "", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"]
)
def test_no_trace_id_without_a_valid_traceparent(header: str | None) -> None:
    assert trace_id(header) is None
