"""Throughput through HTTP with wrk: a C load generator in its own process.

A Python HTTP client would need more CPU than the service it measures on two cores; wrk needs
a fraction of a core for thousands of requests per second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import CPU

SCRIPT = Path(__file__).with_name("lua") / "requests.lua"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_detail: str  # e.g. "HTTP 404 x12, timeouts x3": what the errors were, "" without any

    @property
    def errors_text(self) -> str:
        return f"{self.errors} errors" + (f" ({self.error_detail})" if self.errors else "")


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (Debian)")
    return found


def run_wrk(
    base_url: str,
    requests: list[Request],
    *,
    seconds: float,
    connections: int,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """Replay `requests` in a cycle over `connections` keep-alive connections for `seconds`,
    each with `headers` (e.g. the bearer token commands need).

    One wrk thread: on two cores a second one only takes CPU from the server being measured.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as listing:
        for r in requests:
            listing.write(f"{r.method}\t{r.path}\t{r.body}\n")
    cmd = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        base_url,
        "--",
        listing.name,
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    CPU.start()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        CPU.stop()
        Path(listing.name).unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    figures = json.loads(line)
    socket = {
        kind: int(figures[kind])
        for kind in ("connect_errors", "read_errors", "write_errors", "timeouts")
        if figures[kind]
    }
    detail = [f"HTTP {status} x{n}" for status, n in sorted(figures["statuses"].items())]
    detail += [f"{kind.replace('_', ' ')} x{n}" for kind, n in socket.items()]
    errors = int(figures["status_errors"]) + sum(socket.values())
    good = int(figures["requests"]) - int(figures["status_errors"])
    return WrkResult(
        rps=good / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=errors,
        error_detail=", ".join(detail),
    )
