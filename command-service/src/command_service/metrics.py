"""Prometheus metrics of commands: how many by type and outcome, and how long they took."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.commands = Counter(
            "commands_total",
            "Commands handled, by type and outcome",
            ["command", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "command_duration_seconds",
            "Time to handle a command, transaction included",
            ["command"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    @asynccontextmanager
    async def observe(self, command: str) -> AsyncIterator[dict[str, str]]:
        """Time a command; the caller may set `outcome`, an exception names its own."""
        outcome = {"outcome": "accepted"}
        started = time.perf_counter()
        try:
            yield outcome
        except Exception as exc:
            outcome["outcome"] = type(exc).__name__
            raise
        finally:
            self.latency.labels(command).observe(time.perf_counter() - started)
            self.commands.labels(command, outcome["outcome"]).inc()
