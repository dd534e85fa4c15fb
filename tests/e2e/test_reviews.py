"""Reviews through the gateway against the whole stack: the write model, the reviews topic, and
the product page, lists and review lists the projector builds from both topics."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from catalog_contracts.events import REVIEWS_TOPIC
from tests.e2e.conftest import PROBLEM
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def create_product(client: httpx.Client) -> str:
    body = {"name": "Grinder", "category": f"c-{uuid.uuid4().hex[:6]}", "price": "80.00"}
    response = client.post("/api/v1/products", json={**body, "stock": 3})
    assert response.status_code == 201, response.text
    product_id: str = response.json()["id"]
    return product_id


def review(
    client: httpx.Client, infra: Infra, product_id: str, author: str, **body: object
) -> httpx.Response:
    """`author` reviews the product: the author is the subject of the caller's token."""
    return client.post(
        f"/api/v1/products/{product_id}/reviews",
        json={"rating": 5, "title": "Even grind", **body},
        headers=infra.bearer(author),
    )


def test_reviews_through_the_gateway(client: httpx.Client, infra: Infra) -> None:
    product_id = create_product(client)
    first = review(client, infra, product_id, "ada", body="Quiet too.")
    assert first.status_code == 201, first.text
    review_id = first.json()["id"]
    assert first.json() == {"id": review_id, "product_id": product_id, "version": 1}
    assert first.headers["location"] == f"/api/v1/reviews/{review_id}"

    duplicate = review(client, infra, product_id, "ada", rating=1)
    assert (duplicate.status_code, duplicate.headers["content-type"]) == (409, PROBLEM)
    bad = review(client, infra, product_id, "grace", rating=9)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"rating"}
    assert review(client, infra, str(uuid.uuid4()), "ada").status_code == 404

    removed = client.delete(f"/api/v1/reviews/{review_id}")
    assert (removed.status_code, removed.json()) == (200, {"id": review_id, "version": 2})
    assert client.delete(f"/api/v1/reviews/{review_id}").status_code == 409

    async def rows() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(infra.database_url)
        try:
            return await conn.fetch(
                "SELECT status, version, author FROM reviews WHERE product_id = $1",
                uuid.UUID(product_id),
            )
        finally:
            await conn.close()

    [row] = asyncio.run(rows())
    assert (row["status"], row["version"], row["author"]) == ("removed", 2, "ada")


def test_review_events_reach_their_topic_keyed_by_the_product(
    client: httpx.Client, infra: Infra
) -> None:
    product_id = create_product(client)
    review_id = review(client, infra, product_id, "ada").json()["id"]
    assert client.delete(f"/api/v1/reviews/{review_id}").status_code == 200

    async def consume() -> list[tuple[bytes | None, dict[str, object]]]:
        consumer = AIOKafkaConsumer(
            REVIEWS_TOPIC,
            bootstrap_servers=infra.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[tuple[bytes | None, dict[str, object]]] = []
        try:
            async with asyncio.timeout(30):
                while len(found) < 2:
                    batch = await consumer.getmany(timeout_ms=500)
                    for messages in batch.values():
                        for message in messages:
                            document = orjson.loads(message.value or b"{}")
                            if document.get("aggregate_id") == review_id:
                                found.append((message.key, document))
        finally:
            await consumer.stop()
        return found

    found = asyncio.run(consume())
    assert [document["event_type"] for _, document in found] == [
        "ReviewSubmitted",
        "ReviewRemoved",
    ]
    assert {key for key, _ in found} == {product_id.encode()}
    assert all(document["aggregate_type"] == "review" for _, document in found)


def test_the_product_page_shows_its_rating_and_latest_reviews(
    client: httpx.Client, infra: Infra
) -> None:
    product_id = create_product(client)
    ratings = {"ada": 5, "grace": 4, "alan": 4, "edsger": 1}
    ids = {
        author: review(client, infra, product_id, author, rating=r).json()["id"]
        for author, r in ratings.items()
    }
    assert client.delete(f"/api/v1/reviews/{ids['edsger']}").status_code == 200

    # Published: 5, 4, 4 -> 4.33; the removed 1 no longer counts.
    expected = {
        "count": 3,
        "average": "4.33",
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1},
    }
    deadline = time.monotonic() + 15
    while True:
        page = client.get(f"/api/v1/products/{product_id}").json()
        if page.get("rating") == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert page["rating"] == expected
    assert [r["id"] for r in page["latest_reviews"]] == [ids["alan"], ids["grace"], ids["ada"]]
    assert set(page["latest_reviews"][0]) == {"id", "rating", "title", "author", "created_at"}

    listed = client.get("/api/v1/products", params={"category": page["category"]}).json()
    [item] = listed["items"]
    assert (item["rating_average"], item["rating_count"]) == ("4.33", 3)

    reviews = client.get(f"/api/v1/products/{product_id}/reviews", params={"sort": "-rating"})
    assert reviews.status_code == 200
    assert reviews.json()["items"][0]["author"] == "ada"
    assert {r["author"] for r in reviews.json()["items"]} == {"ada", "grace", "alan"}
    assert client.get(f"/api/v1/products/{uuid.uuid4()}/reviews").status_code == 404


def test_a_rated_product_sorts_before_unrated_ones(client: httpx.Client, infra: Infra) -> None:
    category = f"c-{uuid.uuid4().hex[:6]}"
    ids = []
    for name in ("unrated", "liked", "loved"):
        response = client.post(
            "/api/v1/products",
            json={"name": name, "category": category, "price": "1.00", "stock": 1},
        )
        ids.append(response.json()["id"])
    review(client, infra, ids[1], "ada", rating=3)
    review(client, infra, ids[2], "ada", rating=5)
    deadline = time.monotonic() + 15
    while True:
        items = client.get(
            "/api/v1/products", params={"category": category, "sort": "-rating"}
        ).json()["items"]
        if [i["rating_count"] for i in items] == [1, 1, 0] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [i["name"] for i in items] == ["loved", "liked", "unrated"]
