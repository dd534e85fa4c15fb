"""Poison never blocks, and an operator can put it right: an event that keeps failing to apply
is dead-lettered while its partition moves on; `catalogctl dlq` lists and shows it, and once the
cause is fixed, `dlq replay` applies it once (replaying again changes nothing)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.cli import catalogctl
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def poison(infra: Infra, key: str) -> Path:
    """Make the projector fail on every event of products in category `key` (a read-model bug)."""
    if infra.stack_dir is None:
        pytest.skip("TEST_INFRA=external: no fault injection")
    triggers = Path(infra.stack_dir) / "fault-triggers"
    if not triggers.is_dir():
        pytest.skip("the stack runs without STACK_FAULT_INJECTION=1")
    trigger = triggers / f"poison-{key}"
    trigger.touch()
    return trigger


def listed(infra: Infra) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = json.loads(catalogctl(infra, "dlq", "list", "--json").stdout)
    return letters


def test_a_poison_event_is_dead_lettered_then_replayed_once_fixed(
    client: httpx.Client, infra: Infra
) -> None:
    category = f"poison-{uuid.uuid4().hex[:10]}"
    trigger = poison(infra, category)
    try:
        body = {"name": "Poisoned", "category": category, "price": "3.00", "stock": 1}
        product_id = client.post("/api/v1/products", json=body).json()["id"]
        # The partition moves on: a product created after it becomes readable.
        after = client.post("/api/v1/products", json={**body, "category": "after-poison"})
        assert client.get(f"{after.headers['location']}?min_version=1").status_code == 200

        deadline = time.monotonic() + 60
        while not (mine := [x for x in listed(infra) if x["key"] == product_id]):
            assert time.monotonic() < deadline, "the poison event was never dead-lettered"
            time.sleep(0.5)
        [letter] = mine
        assert (letter["reason"], letter["replayed"]) == ("apply-failed", False)
        assert "InjectedFailure" in letter["detail"]
        assert letter["source_topic"] == infra.events_topic
        assert client.get(f"/api/v1/products/{product_id}").status_code == 404
    finally:
        trigger.unlink(missing_ok=True)  # the cause is fixed

    offset, topic = str(letter["offset"]), letter["topic"]
    shown = json.loads(catalogctl(infra, "dlq", "show", offset, "--topic", topic).stdout)
    assert shown["headers"]["dlq.error.reason"] == "apply-failed"
    assert json.loads(shown["value"])["aggregate_id"] == product_id

    dry = catalogctl(infra, "dlq", "replay", "--offset", offset, "--topic", topic, "--dry-run")
    assert "would replay 1" in dry.stdout
    assert client.get(f"/api/v1/products/{product_id}").status_code == 404

    replayed = catalogctl(infra, "dlq", "replay", "--offset", offset, "--topic", topic)
    assert "replayed 1, skipped 0" in replayed.stdout
    page = client.get(f"/api/v1/products/{product_id}?min_version=1")
    assert (page.status_code, page.json()["category"]) == (200, category)

    again = catalogctl(infra, "dlq", "replay", "--offset", offset, "--topic", topic)
    assert "replayed 0, skipped 1" in again.stdout
    [letter] = [x for x in listed(infra) if x["key"] == product_id]
    assert letter["replayed"] is True


def test_dlq_errors_are_one_line(infra: Infra) -> None:
    missing = catalogctl(infra, "dlq", "show", "999999", check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == ["catalogctl: no dead letter at offset 999999"]
    both = catalogctl(infra, "dlq", "replay", check=False)
    assert (both.returncode, both.stderr.strip()) == (
        2,
        "catalogctl: give either --all or --offset N",
    )
