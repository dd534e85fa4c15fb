"""The query service's read time limit, over a link to the real read-model server that toxiproxy
slows down."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import ReviewState
from catalog_contracts.read_models import (
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    REVIEWS_COLLECTION,
    review_document,
)
from query_service.bootstrap import create_app
from query_service.settings import QuerySettings
from tests.fixtures.events import T0, ProductHistory
from tests.fixtures.fake_read_model import product_documents
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration

PROXY = "query-timeout-test"


@pytest.fixture
def slow_mongo_url(infra: Infra) -> Iterator[str]:
    """A MongoDB URL whose every answer arrives 0.7 s late (well within server selection)."""
    if infra.toxiproxy_url is None:
        pytest.skip("toxiproxy runs only in a native stack with fault injection")
    mongo = urlsplit(infra.mongodb_url)
    with httpx.Client(base_url=infra.toxiproxy_url, timeout=10) as api:
        created = api.post(
            "/proxies",
            json={
                "name": PROXY,
                "listen": "127.0.0.1:0",
                "upstream": f"{mongo.hostname}:{mongo.port}",
                "enabled": True,
            },
        )
        assert created.status_code == 201, created.text
        toxic = {"type": "latency", "stream": "downstream", "attributes": {"latency": 700}}
        assert api.post(f"/proxies/{PROXY}/toxics", json=toxic).status_code == 200
        try:
            # The same URL (its credentials and options) with the proxy as the host.
            yield mongo._replace(
                netloc=mongo.netloc.replace(
                    mongo.netloc.rsplit("@", 1)[-1], created.json()["listen"]
                )
            ).geturl()
        finally:
            api.delete(f"/proxies/{PROXY}")


@pytest.fixture
async def product_id(mongo_db: AsyncDatabase[dict[str, Any]]) -> str:
    """A product with a review in every read model the routes read, written over a fast link."""
    state = ProductHistory().state
    written = ReviewState(
        id=uuid4(),
        product_id=state.id,
        rating=4,
        title="Solid",
        body=None,
        author="ada",
        status="published",
        created_at=T0,
        updated_at=T0,
        version=1,
    )
    reviews = [review_document(written)]
    listed, detail = product_documents(state, reviews)
    await mongo_db[PRODUCT_LIST_COLLECTION].insert_one(listed)
    await mongo_db[PRODUCT_DETAIL_COLLECTION].insert_one(detail)
    await mongo_db[REVIEWS_COLLECTION].insert_many(reviews)
    return str(state.id)


@asynccontextmanager
async def query_api(url: str, database: str, timeout_ms: int) -> AsyncIterator[httpx.AsyncClient]:
    settings = QuerySettings(
        mongodb_url=url, mongodb_database=database, mongodb_timeout_ms=timeout_ms
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://q") as client,
    ):
        yield client


def paths(product_id: str) -> list[str]:
    products = "/api/v1/products"
    return [
        f"{products}/{product_id}",
        f"{products}?sort=-rating",
        f"{products}/{product_id}/reviews",
    ]


async def test_a_read_past_the_time_limit_is_a_503_problem(
    slow_mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], product_id: str
) -> None:
    async with query_api(slow_mongo_url, mongo_db.name, 300) as client:
        for path in paths(product_id):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("/read-model-unavailable")


async def test_the_same_reads_within_the_time_limit_answer(
    slow_mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], product_id: str
) -> None:
    """The 503s above are the time limit's doing: a longer one lets the slow link answer."""
    async with query_api(slow_mongo_url, mongo_db.name, 10_000) as client:
        detail, listed, reviews = [await client.get(path) for path in paths(product_id)]
    assert detail.status_code == 200, detail.text
    assert detail.json()["rating"]["average"] == "4.00"
    assert listed.json()["items"][0]["rating_count"] == 1
    assert [item["rating"] for item in reviews.json()["items"]] == [4]
