"""Through the gateway: a product created by a command is served by the query side."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def test_created_product_is_readable_through_the_query_side(infra: Infra) -> None:
    category = f"e2e-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=infra.gateway_url, timeout=10, headers=infra.auth) as client:
        created = client.post(
            "/api/v1/products",
            json={
                "name": "Espresso machine",
                "description": "15 bar",
                "category": category,
                "price": "249.90",
                "stock": 7,
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["version"] == 1
        assert created.headers["location"] == f"/api/v1/products/{body['id']}"
        assert created.headers["etag"] == '"1"'

        detail = client.get(f"/api/v1/products/{body['id']}", params={"min_version": 1})
        assert detail.status_code == 200, detail.text
        product = detail.json()
        assert product["price"] == "249.90"
        assert product["stock"] == 7
        assert product["in_stock"] is True
        assert product["status"] == "active"
        assert detail.headers["etag"] == '"1"'

        deadline = time.monotonic() + 10
        while True:
            listed = client.get("/api/v1/products", params={"category": category})
            assert listed.status_code == 200
            if listed.json()["items"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert listed.json()["items"] == [
            {
                "id": body["id"],
                "name": "Espresso machine",
                "price": "249.90",
                "in_stock": True,
                "category": category,
                "rating_average": None,
                "rating_count": 0,
            }
        ]


def test_invalid_command_is_a_problem_naming_the_field(infra: Infra) -> None:
    with httpx.Client(base_url=infra.gateway_url, timeout=10, headers=infra.auth) as client:
        response = client.post(
            "/api/v1/products",
            json={
                "name": "x",
                "category": "c",
                "price": "-1",
                "stock": 1,
                "colour": "red",
            },
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"price", "colour"}
