"""The command API in process: the ASGI app over the in-memory write model, no server, no socket.

Every rule of the HTTP edge (status codes, problem documents naming the field, ETag and
If-Match, Idempotency-Key replay and conflicts, body limit) is checked here in milliseconds;
the e2e suite proves the same app is wired to PostgreSQL, Kafka and the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from command_service.bootstrap import create_app
from tests.fixtures.fakes import FakeStore, FakeUnitOfWorkFactory
from tests.fixtures.tokens import bearer, command_settings

PRODUCT = {"name": "Espresso machine", "category": "kitchen", "price": "249.90", "stock": 7}
PROBLEM = "application/problem+json"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def client(store: FakeStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a token of `ada` with both scopes (tests/api/test_auth.py refuses
    every other kind of token)."""
    app = create_app(command_settings(tmp_path), uow_factory=FakeUnitOfWorkFactory(store))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://command.test",
            headers=bearer("ada"),
        ) as http,
    ):
        yield http


async def create(client: httpx.AsyncClient, **changes: Any) -> str:
    response = await client.post("/api/v1/products", json={**PRODUCT, **changes})
    assert response.status_code == 201, response.text
    product_id: str = response.json()["id"]
    return product_id


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body


# ---------------------------------------------------------------------------------- create


async def test_create_answers_201_with_location_and_etag(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    response = await client.post("/api/v1/products", json=PRODUCT)
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "version": 1}
    assert response.headers["location"] == f"/api/v1/products/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert "idempotent-replayed" not in response.headers
    product = store.products[UUID(body["id"])]
    assert (product.name, str(product.price), product.stock) == ("Espresso machine", "249.90", 7)
    [row] = store.outbox
    assert row.event.event_type == "ProductCreated"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"category": None}, "category"),
        ({"price": "-1.00"}, "price"),
        ({"price": "1.001"}, "price"),
        ({"price": "10000000000.00"}, "price"),
        ({"stock": -1}, "stock"),
        ({"stock": 1.5}, "stock"),
        ({"stock": "7"}, "stock"),
        ({"stock": 1_000_000_001}, "stock"),
        ({"description": "d" * 5001}, "description"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_create_refuses_bad_fields_naming_them(
    client: httpx.AsyncClient, store: FakeStore, changes: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/products", json={**PRODUCT, **changes})
    assert_problem(response, 422, field)
    assert store.products == {}
    assert store.outbox == []


async def test_a_missing_field_is_named(client: httpx.AsyncClient) -> None:
    body = {k: v for k, v in PRODUCT.items() if k != "category"}
    assert_problem(await client.post("/api/v1/products", json=body), 422, "category")


async def test_invalid_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/products", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "body")


async def test_a_body_over_64_kib_is_refused_with_413(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    response = await client.post("/api/v1/products", json={**PRODUCT, "description": "x" * 70_000})
    assert_problem(response, 413)
    assert store.products == {}


# ---------------------------------------------------------------------------- idempotency


async def test_same_key_and_body_replays_the_first_response(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = await client.post("/api/v1/products", json=PRODUCT, headers=headers)
    again = await client.post("/api/v1/products", json=PRODUCT, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == '"1"'
    assert again.headers["idempotent-replayed"] == "true"
    assert len(store.products) == 1
    assert len(store.outbox) == 1


async def test_same_key_other_body_is_a_422(client: httpx.AsyncClient, store: FakeStore) -> None:
    headers = {"Idempotency-Key": "create-2"}
    await client.post("/api/v1/products", json=PRODUCT, headers=headers)
    other = await client.post("/api/v1/products", json={**PRODUCT, "stock": 8}, headers=headers)
    assert_problem(other, 422)
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert len(store.products) == 1


async def test_a_key_in_flight_is_a_409(client: httpx.AsyncClient, store: FakeStore) -> None:
    store.claimed_keys.add(("ada", "busy"))  # another request holds it
    response = await client.post(
        "/api/v1/products", json=PRODUCT, headers={"Idempotency-Key": "busy"}
    )
    assert_problem(response, 409)
    assert response.json()["type"].endswith("idempotency-key-in-flight")
    assert store.products == {}


async def test_a_retried_stock_adjustment_is_applied_once(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    url = f"/api/v1/products/{product_id}/stock-adjustments"
    headers = {"Idempotency-Key": "take-2"}
    first = await client.post(url, json={"quantity_change": -2}, headers=headers)
    again = await client.post(url, json={"quantity_change": -2}, headers=headers)
    assert first.json() == again.json() == {"id": product_id, "version": 2, "stock": 5}
    assert again.headers["idempotent-replayed"] == "true"
    assert store.products[UUID(product_id)].stock == 5
    assert len(store.outbox) == 2


async def test_an_overlong_idempotency_key_is_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/products", json=PRODUCT, headers={"Idempotency-Key": "k" * 256}
    )
    assert_problem(response, 422, "idempotency-key")


# -------------------------------------------------------------------------------- changes


async def test_patch_price_and_stock_answer_200_with_the_new_version(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    patched = await client.patch(f"/api/v1/products/{product_id}", json={"name": "Moka pot"})
    assert (patched.status_code, patched.json()) == (200, {"id": product_id, "version": 2})
    assert patched.headers["etag"] == '"2"'
    priced = await client.put(f"/api/v1/products/{product_id}/price", json={"price": "199.00"})
    assert (priced.status_code, priced.json()["version"]) == (200, 3)
    stocked = await client.post(
        f"/api/v1/products/{product_id}/stock-adjustments",
        json={"quantity_change": 3, "reason": "delivery"},
    )
    assert stocked.json() == {"id": product_id, "version": 4, "stock": 10}
    product = store.products[UUID(product_id)]
    assert (product.name, str(product.price), product.stock, product.version) == (
        "Moka pot",
        "199.00",
        10,
        4,
    )
    assert [row.event.event_type for row in store.outbox] == [
        "ProductCreated",
        "ProductDetailsUpdated",
        "ProductPriceChanged",
        "ProductStockAdjusted",
    ]


async def test_a_change_that_changes_nothing_keeps_the_version(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    same = await client.patch(f"/api/v1/products/{product_id}", json={"name": PRODUCT["name"]})
    assert (same.status_code, same.json()["version"]) == (200, 1)
    assert len(store.outbox) == 1


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"name": "x"}),
        ("PUT", "/price", {"price": "1.00"}),
        ("POST", "/stock-adjustments", {"quantity_change": 1}),
        ("DELETE", "", None),
    ],
)
async def test_an_unknown_product_is_a_404(
    client: httpx.AsyncClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, f"/api/v1/products/{uuid4()}{suffix}", json=body)
    assert_problem(response, 404)


async def test_a_malformed_product_id_is_named(client: httpx.AsyncClient) -> None:
    response = await client.patch("/api/v1/products/not-a-uuid", json={"name": "x"})
    assert_problem(response, 422, "product_id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": None}, "name"),
        ({"name": "x", "price": "1.00"}, "price"),
    ],
)
async def test_patch_refuses_bad_bodies(
    client: httpx.AsyncClient, store: FakeStore, body: dict[str, Any], field: str
) -> None:
    product_id = await create(client)
    assert_problem(await client.patch(f"/api/v1/products/{product_id}", json=body), 422, field)
    assert len(store.outbox) == 1


async def test_a_negative_price_is_named(client: httpx.AsyncClient, store: FakeStore) -> None:
    product_id = await create(client)
    response = await client.put(f"/api/v1/products/{product_id}/price", json={"price": "-5"})
    assert_problem(response, 422, "price")
    assert store.products[UUID(product_id)].version == 1


async def test_stock_below_zero_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    response = await client.post(
        f"/api/v1/products/{product_id}/stock-adjustments", json={"quantity_change": -8}
    )
    assert_problem(response, 409)
    assert response.json()["type"].endswith("insufficient-stock")
    assert (response.json()["available"], response.json()["requested"]) == (7, 8)
    assert store.products[UUID(product_id)].stock == 7
    assert len(store.outbox) == 1


async def test_concurrent_adjustments_never_oversell(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client, stock=10)
    url = f"/api/v1/products/{product_id}/stock-adjustments"
    responses = await asyncio.gather(
        *(client.post(url, json={"quantity_change": -1}) for _ in range(25))
    )
    assert sorted(r.status_code for r in responses) == [200] * 10 + [409] * 15
    product = store.products[UUID(product_id)]
    assert (product.stock, product.version) == (0, 11)
    versions = [row.event.aggregate_version for row in store.outbox]
    assert versions == list(range(1, 12))


async def test_discontinued_products_refuse_every_change(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    gone = await client.request(
        "DELETE", f"/api/v1/products/{product_id}", json={"reason": "end of line"}
    )
    assert (gone.status_code, gone.json()) == (200, {"id": product_id, "version": 2})
    for method, suffix, body in [
        ("PATCH", "", {"name": "x"}),
        ("PUT", "/price", {"price": "1.00"}),
        ("POST", "/stock-adjustments", {"quantity_change": 1}),
    ]:
        response = await client.request(method, f"/api/v1/products/{product_id}{suffix}", json=body)
        assert_problem(response, 409)
        assert response.json()["type"].endswith("product-discontinued")
    assert store.products[UUID(product_id)].version == 2


# ------------------------------------------------------------------------------ If-Match


async def test_if_match_with_the_current_version_applies(client: httpx.AsyncClient) -> None:
    product_id = await create(client)
    # "3.4": the page tag the query side gives version 3 once reviews exist (its version counts).
    for if_match in ('"1"', 'W/"2"', '"3.4"', "*"):
        response = await client.patch(
            f"/api/v1/products/{product_id}",
            json={"description": if_match},
            headers={"If-Match": if_match},
        )
        assert response.status_code == 200, (if_match, response.text)


@pytest.mark.parametrize("if_match", ['"7"', '"0"', "garbage", '"1", "2"'])
async def test_a_stale_or_unmatchable_if_match_is_a_412(
    client: httpx.AsyncClient, store: FakeStore, if_match: str
) -> None:
    product_id = await create(client)
    response = await client.put(
        f"/api/v1/products/{product_id}/price",
        json={"price": "1.00"},
        headers={"If-Match": if_match},
    )
    assert_problem(response, 412)
    assert response.headers["etag"] == '"1"'
    assert response.json()["current_version"] == 1
    assert len(store.outbox) == 1


# ------------------------------------------------------------------------------ the store


async def test_a_store_outage_is_a_503_and_keeps_nothing(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    store.fail_next_commit = True
    response = await client.post(
        "/api/v1/products", json=PRODUCT, headers={"Idempotency-Key": "lost"}
    )
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert (store.products, store.outbox, store.idempotency) == ({}, [], {})
    # The key was not kept: the retry is a first request.
    retried = await client.post(
        "/api/v1/products", json=PRODUCT, headers={"Idempotency-Key": "lost"}
    )
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers


async def test_readiness_follows_the_store(client: httpx.AsyncClient, store: FakeStore) -> None:
    assert (await client.get("/readyz")).status_code == 200
    store.available = False
    assert_problem(await client.get("/readyz"), 503)
    assert (await client.get("/healthz")).status_code == 200
    assert_problem(await client.post("/api/v1/products", json=PRODUCT), 503)


async def test_the_openapi_document_names_every_command(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/v1/products"]) == {"post"}
    assert set(paths["/api/v1/products/{product_id}"]) == {"patch", "delete"}
    assert set(paths["/api/v1/products/{product_id}/price"]) == {"put"}
    assert set(paths["/api/v1/products/{product_id}/stock-adjustments"]) == {"post"}
    create_parameters = {p["name"] for p in paths["/api/v1/products"]["post"]["parameters"]}
    assert {"idempotency-key", "if-match"} <= create_parameters


# -------------------------------------------------------------------------------- reviews

REVIEW = {"rating": 4, "title": "Makes a fine espresso", "body": "Loud, but quick."}


async def submit(
    client: httpx.AsyncClient, product_id: str, author: str = "ada", **changes: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/products/{product_id}/reviews",
        json={**REVIEW, **changes},
        headers=bearer(author),
    )


async def test_a_review_is_created_with_201_and_its_event(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    response = await submit(client, product_id)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"id": body["id"], "product_id": product_id, "version": 1}
    assert response.headers["location"] == f"/api/v1/reviews/{body['id']}"
    review = store.reviews[UUID(body["id"])]
    assert (review.rating, review.author, review.status) == (4, "ada", "published")
    event = store.outbox[-1].event
    assert (event.event_type, event.aggregate_type, event.aggregate_id) == (
        "ReviewSubmitted",
        "review",
        UUID(body["id"]),
    )
    assert event.state.product_id == UUID(product_id)
    # The product itself did not change.
    assert store.products[UUID(product_id)].version == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": True}, "rating"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"body": "b" * 5001}, "body"),
        ({"stars": 5}, "stars"),
    ],
)
async def test_bad_review_fields_are_named(
    client: httpx.AsyncClient, store: FakeStore, changes: dict[str, Any], field: str
) -> None:
    product_id = await create(client)
    assert_problem(await submit(client, product_id, **changes), 422, field)
    assert store.reviews == {}
    assert len(store.outbox) == 1


async def test_the_author_is_not_a_body_field(client: httpx.AsyncClient) -> None:
    product_id = await create(client)
    response = await client.post(
        f"/api/v1/products/{product_id}/reviews",
        json={**REVIEW, "author": "mallory"},
    )
    assert_problem(response, 422, "author")


async def test_a_rating_of_five_point_zero_is_five(client: httpx.AsyncClient) -> None:
    # JSON Schema counts 5.0 as an integer.
    product_id = await create(client)
    assert (await submit(client, product_id, rating=5.0)).status_code == 201


async def test_a_review_of_an_unknown_product_is_a_404(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    assert_problem(await submit(client, str(uuid4())), 404)
    assert store.reviews == {}


async def test_a_review_of_a_discontinued_product_is_a_409(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    await client.delete(f"/api/v1/products/{product_id}")
    response = await submit(client, product_id)
    assert_problem(response, 409)
    assert response.json()["type"].endswith("product-discontinued")
    assert store.reviews == {}


async def test_one_published_review_per_author_and_product(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id, other_product = await create(client), await create(client)
    first = await submit(client, product_id, author="ada")
    again = await submit(client, product_id, author="ada", rating=1)
    assert_problem(again, 409)
    assert again.json()["type"].endswith("duplicate-review")
    assert again.json()["review_id"] == first.json()["id"]
    # Another author, or the same author on another product, may review.
    assert (await submit(client, product_id, author="grace")).status_code == 201
    assert (await submit(client, other_product, author="ada")).status_code == 201
    assert len(store.reviews) == 3


async def test_concurrent_reviews_of_one_author_publish_one(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    responses = await asyncio.gather(*(submit(client, product_id) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert len(store.reviews) == 1


async def test_removing_a_review_answers_200_then_409(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    review_id = (await submit(client, product_id)).json()["id"]
    removed = await client.request(
        "DELETE", f"/api/v1/reviews/{review_id}", json={"reason": "off topic"}
    )
    assert (removed.status_code, removed.json()) == (200, {"id": review_id, "version": 2})
    assert removed.headers["etag"] == '"2"'
    assert store.reviews[UUID(review_id)].status == "removed"
    assert store.outbox[-1].event.event_type == "ReviewRemoved"
    again = await client.delete(f"/api/v1/reviews/{review_id}")
    assert_problem(again, 409)
    assert again.json()["type"].endswith("review-already-removed")
    # Once removed, the author may publish a new review of the product.
    assert (await submit(client, product_id)).status_code == 201


async def test_removing_an_unknown_review_is_a_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete(f"/api/v1/reviews/{uuid4()}"), 404)


async def test_removing_a_review_honours_if_match(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    product_id = await create(client)
    review_id = (await submit(client, product_id)).json()["id"]
    stale = await client.delete(f"/api/v1/reviews/{review_id}", headers={"If-Match": '"3"'})
    assert_problem(stale, 412)
    assert store.reviews[UUID(review_id)].status == "published"


async def test_a_retried_review_replays(client: httpx.AsyncClient, store: FakeStore) -> None:
    product_id = await create(client)
    headers = {"Idempotency-Key": "review-1"}
    url = f"/api/v1/products/{product_id}/reviews"
    first = await client.post(url, json=REVIEW, headers=headers)
    again = await client.post(url, json=REVIEW, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(store.reviews) == 1
