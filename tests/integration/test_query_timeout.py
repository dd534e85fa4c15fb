"""The query service's read time limit, over a link to the real read-model server that toxiproxy
slows down."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from query_service.bootstrap import create_app
from query_service.settings import QuerySettings
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
            yield f"mongodb://{created.json()['listen']}/"
        finally:
            api.delete(f"/proxies/{PROXY}")


async def test_a_read_past_the_time_limit_is_a_503_problem(slow_mongo_url: str) -> None:
    app = create_app(QuerySettings(mongodb_url=slow_mongo_url, mongodb_timeout_ms=300))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://q") as client,
    ):
        response = await client.get("/api/v1/products/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/read-model-unavailable")
