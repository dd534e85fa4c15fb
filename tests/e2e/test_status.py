"""`catalogctl status` against the running stack: every figure, from the servers and metrics."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.cli import catalogctl
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def test_status_reports_every_figure(client: httpx.Client, infra: Infra) -> None:
    created = client.post(
        "/api/v1/products", json={"name": "Seen", "category": "status", "price": "1", "stock": 1}
    )
    assert client.get(f"{created.headers['location']}?min_version=1").status_code == 200

    figures = json.loads(catalogctl(infra, "status", "--json").stdout)
    assert set(figures) == {
        "relays", "shards", "outbox", "consumer_lag", "dead_letters", "projector",
    }  # fmt: skip
    # make up runs two relays: they share the 16 shards, each one held by one relay.
    held = [shard for relay in figures["relays"] for shard in relay["shards"]]
    assert sorted(held) == list(range(16))
    assert len(figures["relays"]) == 2
    assert {relay["application_name"] for relay in figures["relays"]} == {"catalog-relay"}
    assert figures["shards"] == {"total": 16, "without_relay": []}
    assert figures["outbox"]["backlog"] >= 0
    assert figures["outbox"]["oldest_age_seconds"] >= 0
    topics = {row["topic"] for row in figures["consumer_lag"]}
    assert topics == {infra.events_topic, "catalog.reviews.v1"}
    assert all(row["lag"] >= 0 for row in figures["consumer_lag"])
    assert sum(row["end_offset"] for row in figures["consumer_lag"]) > 0
    assert set(figures["dead_letters"]) == {f"{t}.dlq" for t in topics}
    projector = figures["projector"]
    assert projector["commit_to_view_samples"] > 0
    assert 0 < projector["commit_to_view_p50_ms"] <= projector["commit_to_view_p99_ms"]
    assert projector["categories_staleness_seconds"] >= 0

    text = catalogctl(infra, "status").stdout
    assert "relays: 2 running, 16 shards" in text
    assert "publishes 8 shard(s)" in text
    assert "commit-to-view p50" in text


def test_the_services_log_json_lines_joined_by_trace_and_correlation_id(
    client: httpx.Client, infra: Infra
) -> None:
    if infra.stack_dir is None:
        pytest.skip("TEST_INFRA=external: the services' logs are elsewhere")
    trace = uuid.uuid4().hex
    correlation = f"corr-{uuid.uuid4().hex[:8]}"
    headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "X-Correlation-Id": correlation}
    body = {"name": "Logged", "category": "logs", "price": "1", "stock": 1}
    created = client.post("/api/v1/products", json=body, headers=headers)
    assert created.status_code == 201
    logs = Path(infra.stack_dir) / "logs"
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for name in ("command.log", "command-2.log")
            if (logs / name).exists()
            for line in (logs / name).read_text(errors="replace").splitlines()
            if trace in line
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    [line] = lines
    assert (line["service"], line["logger"], line["status"]) == ("command-service", "access", 201)
    assert (line["trace_id"], line["correlation_id"]) == (trace, correlation)
    assert (line["method"], line["path"]) == ("POST", "/api/v1/products")
