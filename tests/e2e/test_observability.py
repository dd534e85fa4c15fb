"""The stack observed as an operator would: one command's trace in Jaeger across the three
services, and Prometheus scraping every part with the alert rules loaded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e

RULES = (
    Path(__file__).resolve().parents[2] / "deploy" / "observability" / "prometheus" / "rules.yaml"
)
T = TypeVar("T")


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    """`probe()`'s first answer that is not None, asked every half second."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def spans_by_service(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A Jaeger trace's spans, grouped by the service that reported them."""
    services: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        name = trace["processes"][span["processID"]]["serviceName"]
        services.setdefault(name, []).append(span)
    return services


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def test_a_commands_trace_crosses_the_command_service_the_relay_and_the_projector(
    client: httpx.Client, infra: Infra
) -> None:
    if infra.jaeger_url is None:
        pytest.skip("this stack runs no Jaeger (TEST_INFRA=external without JAEGER_URL)")
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    body = {"name": "Traced", "category": "traces", "price": "3.50", "stock": 2}
    created = client.post("/api/v1/products", json=body, headers={"traceparent": traceparent})
    assert created.status_code == 201, created.text
    assert client.get(f"{created.headers['location']}?min_version=1").status_code == 200

    def complete() -> dict[str, list[dict[str, Any]]] | None:
        answer = httpx.get(f"{infra.jaeger_url}/api/traces/{trace_id}", timeout=5)
        if answer.status_code != 200:
            return None
        [trace] = answer.json()["data"]
        services = spans_by_service(trace)
        wanted = {"command-service", "relay", "projector"}
        return services if wanted <= set(services) else None

    services = eventually("the trace with all three services' spans", complete)
    command = {span["operationName"]: span for span in services["command-service"]}
    assert "POST /api/v1/products" in command
    assert {"command create_product", "transaction"} <= set(command)
    assert any(tags(span).get("db.system") == "postgresql" for span in command.values())
    [publish] = services["relay"]
    assert publish["operationName"] == f"publish {infra.events_topic}"
    assert tags(publish)["outbox.wait_ms"] >= 0
    assert tags(publish)["span.kind"] == "producer"
    # The relay's span is a child of the command's transaction, which wrote the outbox row.
    [parent] = [ref["spanID"] for ref in publish["references"] if ref["refType"] == "CHILD_OF"]
    assert parent == command["transaction"]["spanID"]
    applied = {span["operationName"]: span for span in services["projector"]}
    apply = applied["apply ProductCreated"]
    assert tags(apply)["catalog.aggregate_id"] == created.json()["id"]
    [parent] = [ref["spanID"] for ref in apply["references"] if ref["refType"] == "CHILD_OF"]
    assert parent == publish["spanID"]
    writes = [span for span in services["projector"] if tags(span).get("db.system") == "mongodb"]
    assert writes, f"no MongoDB span under the projector's apply span: {sorted(applied)}"


def test_prometheus_scrapes_every_part_and_loads_the_alert_rules(infra: Infra) -> None:
    if infra.prometheus_url is None:
        pytest.skip("this stack runs no Prometheus (TEST_INFRA=external without PROMETHEUS_URL)")

    def all_up() -> list[dict[str, Any]] | None:
        targets = httpx.get(f"{infra.prometheus_url}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = eventually("every scrape target up", all_up)
    jobs = {target["labels"]["job"] for target in active}
    assert jobs == {"command", "relay", "projector", "query", "jaeger", "prometheus"}
    assert len([t for t in active if t["labels"]["job"] == "command"]) == 2

    rules = httpx.get(f"{infra.prometheus_url}/api/v1/rules", timeout=5).json()["data"]
    loaded = {rule["name"] for group in rules["groups"] for rule in group["rules"]}
    expected = {
        rule.get("alert") or rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    assert loaded == expected
    assert any(rule["type"] == "alerting" for group in rules["groups"] for rule in group["rules"])
    # The rules evaluate against real series: the relay's leadership is scraped.
    query = httpx.get(
        f"{infra.prometheus_url}/api/v1/query", params={"query": "sum(relay_is_leader)"}, timeout=5
    ).json()
    [sample] = query["data"]["result"]
    assert float(sample["value"][1]) >= 1
