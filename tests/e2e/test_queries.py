"""The query API through the gateway: filters, sorting, cursors, details, categories."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import httpx
import pytest

from tests.e2e.conftest import PROBLEM

pytestmark = pytest.mark.e2e


def create(
    client: httpx.Client,
    category: str,
    name: str,
    price: str,
    stock: int,
    description: str | None = None,
) -> str:
    body = {"name": name, "category": category, "price": price, "stock": stock}
    if description is not None:
        body["description"] = description
    response = client.post("/api/v1/products", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def seen(client: httpx.Client, pid: str, version: int) -> dict:  # type: ignore[type-arg]
    response = client.get(f"/api/v1/products/{pid}", params={"min_version": version})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def catalog(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """Six products in a category of their own, all visible on the query side."""
    category = f"q-{uuid.uuid4().hex[:8]}"
    ids = {
        "Alpha": create(client, category, "Alpha", "5.00", 0, "first of its kind"),
        "bravo": create(client, category, "bravo", "12.50", 3),
        "Charlie": create(client, category, "Charlie", "12.50", 1, "The ALPHA successor"),
        "Delta": create(client, category, "Delta", "99.99", 10),
        "Echo": create(client, category, "Echo", "0.00", 2),
        "Foxtrot": create(client, category, "Foxtrot", "250.00", 0),
    }
    for pid in ids.values():
        seen(client, pid, 1)
    return category, ids


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_filters(client: httpx.Client, catalog: tuple[str, dict[str, str]]) -> None:
    category, _ = catalog
    listed = lambda **p: names(client.get("/api/v1/products", params={"category": category, **p}))  # noqa: E731
    assert listed() == ["Alpha", "Charlie", "Delta", "Echo", "Foxtrot", "bravo"]
    assert listed(in_stock="true") == ["Charlie", "Delta", "Echo", "bravo"]
    assert listed(in_stock="false") == ["Alpha", "Foxtrot"]
    assert listed(min_price="12.50", max_price="99.99") == ["Charlie", "Delta", "bravo"]
    assert listed(q="alpha") == ["Alpha", "Charlie"]
    assert listed(q="ALP", in_stock="true") == ["Charlie"]


def test_sorting_and_cursor_pagination(
    client: httpx.Client, catalog: tuple[str, dict[str, str]]
) -> None:
    category, ids = catalog
    by_price = names(client.get("/api/v1/products", params={"category": category, "sort": "price"}))
    assert by_price[0] == "Echo"
    assert by_price[-1] == "Foxtrot"
    tied = [n for n in by_price if n in ("bravo", "Charlie")]
    expected_tie = sorted(("bravo", "Charlie"), key=lambda n: ids[n])  # ties broken by id
    assert tied == expected_tie
    assert (
        names(client.get("/api/v1/products", params={"category": category, "sort": "-price"}))[0]
        == "Foxtrot"
    )
    assert (
        names(client.get("/api/v1/products", params={"category": category, "sort": "-name"}))[0]
        == "bravo"
    )
    for sort in ("name", "-name", "price", "-price", "-updated_at"):
        collected: list[str] = []
        cursor = None
        while True:
            params = {"category": category, "sort": sort, "limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/products", params=params).json()
            collected += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(collected) == sorted(ids.values()), sort


def test_list_items_have_the_contract_fields(
    client: httpx.Client, catalog: tuple[str, dict[str, str]]
) -> None:
    category, ids = catalog
    page = client.get("/api/v1/products", params={"category": category, "q": "Delta"}).json()
    assert page == {
        "items": [
            {
                "id": ids["Delta"],
                "name": "Delta",
                "price": "99.99",
                "in_stock": True,
                "category": category,
                "rating_average": None,
                "rating_count": 0,
            }
        ],
        "next_cursor": None,
    }


def test_discontinued_products_leave_lists_but_stay_readable(
    client: httpx.Client, catalog: tuple[str, dict[str, str]]
) -> None:
    category, ids = catalog
    gone = client.delete(f"/api/v1/products/{ids['Delta']}")
    assert gone.status_code == 200
    assert seen(client, ids["Delta"], 2)["status"] == "discontinued"
    assert "Delta" not in names(client.get("/api/v1/products", params={"category": category}))
    assert names(
        client.get("/api/v1/products", params={"category": category, "status": "discontinued"})
    ) == ["Delta"]


def test_categories_are_what_the_products_aggregate_to(
    client: httpx.Client, catalog: tuple[str, dict[str, str]]
) -> None:
    category, ids = catalog
    client.post(f"/api/v1/products/{ids['Echo']}/stock-adjustments", json={"quantity_change": -2})
    client.delete(f"/api/v1/products/{ids['Foxtrot']}")
    seen(client, ids["Echo"], 2)
    seen(client, ids["Foxtrot"], 2)
    expected = {
        "category": category,
        "product_count": 5,
        "in_stock_count": 3,
        "total_stock": 14,
        "min_price": "0.00",
        "max_price": "99.99",
    }
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in client.get("/api/v1/categories").json() if r["category"] == category]
        if rows == [expected] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rows == [expected]
    listed = client.get("/api/v1/products", params={"category": category, "limit": 200}).json()
    details = [seen(client, item["id"], 1) for item in listed["items"]]
    assert expected["total_stock"] == sum(d["stock"] for d in details)
    assert Decimal(expected["max_price"]) == max(Decimal(d["price"]) for d in details)


def test_detail_etag_and_conditional_get(client: httpx.Client) -> None:
    pid = create(client, f"d-{uuid.uuid4().hex[:6]}", "Lamp", "10.00", 1)
    first = client.get(f"/api/v1/products/{pid}", params={"min_version": 1})
    assert first.headers["etag"] == '"1"'
    assert set(first.json()) == {
        "id",
        "name",
        "description",
        "category",
        "price",
        "stock",
        "in_stock",
        "status",
        "version",
        "created_at",
        "updated_at",
        "rating",
        "latest_reviews",
    }
    assert first.json()["rating"] == {
        "count": 0,
        "average": None,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
    }
    assert first.json()["latest_reviews"] == []
    cached = client.get(f"/api/v1/products/{pid}", headers={"If-None-Match": '"1"'})
    assert cached.status_code == 304
    assert cached.content == b""
    head = client.head(f"/api/v1/products/{pid}")
    assert head.status_code == 200
    assert head.headers["etag"] == '"1"'


def test_min_version_never_404s_right_after_create(client: httpx.Client) -> None:
    category = f"m-{uuid.uuid4().hex[:6]}"
    for i in range(10):
        pid = create(client, category, f"p{i}", "1.00", 1)
        assert client.get(f"/api/v1/products/{pid}", params={"min_version": 1}).status_code == 200


def test_min_version_not_reached_is_503_with_retry_after(client: httpx.Client) -> None:
    pid = create(client, f"w-{uuid.uuid4().hex[:6]}", "Lamp", "10.00", 1)
    started = time.monotonic()
    response = client.get(f"/api/v1/products/{pid}", params={"min_version": 5})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == PROBLEM
    assert 2.5 < time.monotonic() - started < 10


@pytest.mark.parametrize(("prefer", "waits"), [("wait=0", False), ("respond-async, wait=x", True)])
def test_prefer_wait_bounds_the_min_version_wait(
    client: httpx.Client, prefer: str, waits: bool
) -> None:
    """RFC 7240: `wait=N` shortens the wait; a preference not understood is ignored."""
    pid = create(client, f"w-{uuid.uuid4().hex[:6]}", "Lamp", "10.00", 1)
    started = time.monotonic()
    response = client.get(
        f"/api/v1/products/{pid}", params={"min_version": 5}, headers={"Prefer": prefer}
    )
    assert response.status_code == 503
    assert (time.monotonic() - started > 2.5) is waits


def test_unknown_product_is_404(client: httpx.Client) -> None:
    response = client.get(f"/api/v1/products/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "colour"}, "sort"),
        ({"min_price": "-1"}, "min_price"),
        ({"max_price": "abc"}, "max_price"),
        ({"min_price": "5", "max_price": "4"}, "max_price"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"status": "deleted"}, "status"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    client: httpx.Client,
    params: dict,
    parameter: str,  # type: ignore[type-arg]
) -> None:
    response = client.get("/api/v1/products", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert parameter in {e["field"] for e in response.json()["errors"]}


def test_parameters_are_literals_never_operators(client: httpx.Client) -> None:
    response = client.get("/api/v1/products", params={"category": '{"$ne": null}'})
    assert response.status_code == 200
    assert response.json()["items"] == []
    bad_id = client.get("/api/v1/products/not-a-uuid")
    assert bad_id.status_code == 422
