"""Every command of the contract through the gateway, with its status codes."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import PROBLEM
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def create(client: httpx.Client, **overrides: object) -> dict:  # type: ignore[type-arg]
    body = {
        "name": "Desk lamp",
        "category": f"c-{uuid.uuid4().hex[:6]}",
        "price": "25.00",
        "stock": 20,
        **overrides,
    }
    response = client.post("/api/v1/products", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def problem_fields(response: httpx.Response) -> set[str]:
    assert response.headers["content-type"] == PROBLEM
    return {e["field"] for e in response.json().get("errors", [])}


def test_every_change_bumps_the_version_and_etag(client: httpx.Client) -> None:
    product = create(client)
    pid = product["id"]
    r = client.patch(f"/api/v1/products/{pid}", json={"name": "Desk lamp XL", "description": "LED"})
    assert (r.status_code, r.json()["version"], r.headers["etag"]) == (200, 2, '"2"')
    r = client.put(f"/api/v1/products/{pid}/price", json={"price": "27.5"})
    assert (r.status_code, r.json()["version"]) == (200, 3)
    r = client.post(
        f"/api/v1/products/{pid}/stock-adjustments",
        json={"quantity_change": -5, "reason": "order 1"},
    )
    assert r.status_code == 200
    assert r.json() == {"id": pid, "version": 4, "stock": 15}
    r = client.delete(f"/api/v1/products/{pid}")
    assert (r.status_code, r.json()["version"]) == (200, 5)
    detail = client.get(f"/api/v1/products/{pid}", params={"min_version": 5})
    assert detail.status_code == 200
    assert detail.json()["status"] == "discontinued"
    assert detail.json()["price"] == "27.50"


def test_discontinued_products_refuse_changes(client: httpx.Client) -> None:
    pid = create(client)["id"]
    assert client.delete(f"/api/v1/products/{pid}").status_code == 200
    for response in (
        client.delete(f"/api/v1/products/{pid}"),
        client.put(f"/api/v1/products/{pid}/price", json={"price": "1.00"}),
        client.post(f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": 1}),
        client.patch(f"/api/v1/products/{pid}", json={"name": "again"}),
    ):
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM


def test_stock_never_goes_below_zero(client: httpx.Client) -> None:
    pid = create(client, stock=2)["id"]
    r = client.post(f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": -3})
    assert r.status_code == 409
    assert r.json()["type"].endswith("/insufficient-stock")


def test_unknown_product_is_404_for_every_command(client: httpx.Client) -> None:
    pid = uuid.uuid4()
    for response in (
        client.patch(f"/api/v1/products/{pid}", json={"name": "x"}),
        client.put(f"/api/v1/products/{pid}/price", json={"price": "1.00"}),
        client.post(f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": 1}),
        client.delete(f"/api/v1/products/{pid}"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM


def test_stale_if_match_is_412_and_changes_nothing(client: httpx.Client) -> None:
    pid = create(client)["id"]
    ok = client.put(
        f"/api/v1/products/{pid}/price", json={"price": "30.00"}, headers={"If-Match": '"1"'}
    )
    assert ok.status_code == 200
    stale = client.put(
        f"/api/v1/products/{pid}/price", json={"price": "31.00"}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    nxt = client.post(
        f"/api/v1/products/{pid}/stock-adjustments",
        json={"quantity_change": 1},
        headers={"If-Match": '"2"'},
    )
    assert nxt.json()["version"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "category": "c", "price": "1", "stock": 1}, "name"),
        ({"name": "n" * 201, "category": "c", "price": "1", "stock": 1}, "name"),
        ({"name": "n", "category": "c" * 101, "price": "1", "stock": 1}, "category"),
        ({"name": "n", "category": "c", "price": "-1", "stock": 1}, "price"),
        ({"name": "n", "category": "c", "price": "1.999", "stock": 1}, "price"),
        ({"name": "n", "category": "c", "price": "10000000000", "stock": 1}, "price"),
        ({"name": "n", "category": "c", "price": "1", "stock": -1}, "stock"),
        ({"name": "n", "category": "c", "price": "1", "stock": "5"}, "stock"),
        ({"name": "n", "category": "c", "price": "1", "stock": 1_000_000_001}, "stock"),
        ({"name": "n", "category": "c", "price": "1", "stock": 1, "sku": "x"}, "sku"),
        ({"name": "n", "category": "c", "price": "1"}, "stock"),
    ],
)
def test_invalid_create_is_422_naming_the_field(
    client: httpx.Client,
    body: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    response = client.post("/api/v1/products", json=body)
    assert response.status_code == 422
    assert field in problem_fields(response)


def test_invalid_changes_are_422_and_change_nothing(client: httpx.Client) -> None:
    pid = create(client)["id"]
    cases = [
        client.put(f"/api/v1/products/{pid}/price", json={"price": "-0.01"}),
        client.patch(f"/api/v1/products/{pid}", json={}),
        client.patch(f"/api/v1/products/{pid}", json={"name": None}),
        client.patch(f"/api/v1/products/{pid}", json={"colour": "red"}),
        client.post(f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": 1.5}),
        client.post(
            f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": 2_000_000_000}
        ),
        client.post(
            "/api/v1/products", content=b"{not json", headers={"content-type": "application/json"}
        ),
    ]
    assert [r.status_code for r in cases] == [422] * len(cases)
    assert all(r.headers["content-type"] == PROBLEM for r in cases)
    assert client.get(f"/api/v1/products/{pid}", params={"min_version": 1}).json()["version"] == 1


def test_bodies_over_64_kib_are_413(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/products",
        json={
            "name": "n",
            "category": "c",
            "price": "1",
            "stock": 1,
            "description": "x" * 70_000,
        },
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_idempotency_key_replays_the_first_response(client: httpx.Client) -> None:
    key = uuid.uuid4().hex
    body = {"name": "Kettle", "category": "kitchen", "price": "30.00", "stock": 3}
    first = client.post("/api/v1/products", json=body, headers={"Idempotency-Key": key})
    again = client.post("/api/v1/products", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = client.post(
        "/api/v1/products", json={**body, "stock": 4}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.headers["content-type"] == PROBLEM


def test_concurrent_adjustments_through_the_gateway_never_oversell(infra: Infra) -> None:
    with httpx.Client(base_url=infra.gateway_url, timeout=30, headers=infra.auth) as client:
        pid = create(client, stock=20)["id"]

    def take() -> int:
        with httpx.Client(base_url=infra.gateway_url, timeout=30, headers=infra.auth) as c:
            return c.post(
                f"/api/v1/products/{pid}/stock-adjustments", json={"quantity_change": -1}
            ).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(lambda _: take(), range(50)))
    assert statuses.count(200) == 20
    assert statuses.count(409) == 30
    with httpx.Client(base_url=infra.gateway_url, timeout=15) as client:
        final = client.get(f"/api/v1/products/{pid}", params={"min_version": 21})
    assert (final.json()["stock"], final.json()["version"]) == (0, 21)


def test_stopping_the_command_service_stops_all_its_processes(
    client: httpx.Client, infra: Infra
) -> None:
    body = {"name": "while down", "category": "stops", "price": "1.00", "stock": 1}
    infra.stackctl("stop", "command")
    try:
        # More requests than the gateway has command processes: none may find one running.
        for _ in range(4):
            response = client.post("/api/v1/products", json=body)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM
    finally:
        infra.stackctl("start", "command")
    deadline = time.monotonic() + 30  # the gateway retries a failed upstream after 10 s
    while (status := client.post("/api/v1/products", json=body).status_code) != 201:
        assert status == 503, status
        assert time.monotonic() < deadline, "commands still refused 30 s after the start"
        time.sleep(0.5)
