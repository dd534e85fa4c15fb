"""`catalogctl status` against the running stack: every figure, from the servers and metrics."""

from __future__ import annotations

import json

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
    assert set(figures) == {"relays", "outbox", "consumer_lag", "dead_letters", "projector"}
    [leader] = figures["relays"]  # one relay holds the lock, hence every shard
    assert leader["shards"] == "all"
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
    assert "relays: 1 leader(s)" in text
    assert "commit-to-view p50" in text
