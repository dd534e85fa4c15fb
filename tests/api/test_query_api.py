"""The query API in-process: its HTTP rules over an in-memory read model, no server, no socket."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest

from catalog_contracts.events import ProductState, ReviewState
from catalog_contracts.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from query_service.bootstrap import create_app
from query_service.read_models import encode_cursor, review_cursor_tag
from query_service.settings import QuerySettings
from tests.fixtures.events import T0
from tests.fixtures.fake_read_model import FakeReadModel

PRODUCTS = "/api/v1/products"


def pid(n: int) -> str:
    """The id of catalog product `n`: ids sort as their numbers do, so ties read plainly."""
    return str(UUID(f"00000000-0000-4000-8000-{n:012d}"))


def rid(n: int) -> str:
    """The id of review `n`, ordered the same way."""
    return str(UUID(f"00000000-0000-4000-a000-{n:012d}"))


def product(
    n: int,
    name: str,
    category: str,
    price: str,
    stock: int,
    *,
    updated: int,
    description: str | None = None,
    status: str = "active",
) -> ProductState:
    return ProductState(
        id=UUID(pid(n)),
        name=name,
        description=description,
        category=category,
        price=Decimal(price),
        stock=stock,
        status=status,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=updated),
        version=1,
    )


def review(
    n: int,
    product_n: int,
    rating: int,
    *,
    created: int,
    status: str = "published",
    body: str | None = None,
) -> ReviewState:
    return ReviewState(
        id=UUID(rid(n)),
        product_id=UUID(pid(product_n)),
        rating=rating,
        title=f"Review {n}",
        body=body,
        author=f"author-{n}",
        status=status,
        created_at=T0 + timedelta(seconds=created),
        updated_at=T0 + timedelta(seconds=created),
        version=1 if status == "published" else 2,
    )


# Ties on purpose: bravo and Charlie share a price, bravo and Delta (4) an update time, the two
# Deltas a name; lowercase "bravo" sorts after every capital, as MongoDB compares bytes.
CATALOG = [
    product(1, "Alpha", "tools", "5.00", 0, updated=10, description="first of its kind"),
    product(2, "bravo", "tools", "12.50", 3, updated=30),
    product(3, "Charlie", "tools", "12.50", 1, updated=20, description="The ALPHA successor"),
    product(4, "Delta", "tools", "99.99", 10, updated=30),
    product(5, "Echo", "garden", "0.00", 2, updated=50),
    product(6, "Foxtrot", "garden", "250.00", 0, updated=40, description="50% off [today]"),
    product(7, "Golf", "tools", "7.00", 4, updated=60, status="discontinued"),
    product(8, "Delta", "garden", "1.00", 5, updated=5),
    product(9, "Hotel", "retired", "3.00", 1, updated=70, status="discontinued"),
]

ORDERS = {
    "name": [1, 3, 4, 8, 5, 6, 2],
    "-name": [2, 6, 5, 4, 8, 3, 1],
    "price": [5, 8, 1, 2, 3, 4, 6],
    "-price": [6, 4, 2, 3, 1, 8, 5],
    "-updated_at": [5, 6, 2, 4, 3, 1, 8],
    # bravo and Charlie both average 4.50; 5 has only a removed review, so it is unrated too.
    "-rating": [2, 3, 1, 4, 5, 6, 8],
}

# Alpha's reviews tie on purpose: 12 and 13 on their time, 11 and 15, and 12, 13 and 17 on
# their rating. 14 is removed; 99 is about a product never projected.
REVIEWS = [
    review(11, 1, 5, created=10, body="Sharp."),
    review(12, 1, 4, created=20),
    review(13, 1, 4, created=20, body="Good enough."),
    review(14, 1, 2, created=30, status="removed"),
    review(15, 1, 5, created=40),
    review(16, 1, 1, created=50, body="Broke at once."),
    review(17, 1, 4, created=5),
    review(21, 2, 4, created=10),
    review(22, 2, 5, created=11),
    review(31, 3, 5, created=10),
    review(32, 3, 4, created=12),
    review(41, 4, 3, created=10),
    review(42, 4, 5, created=11, status="removed"),
    review(51, 5, 2, created=10, status="removed"),
    review(71, 7, 5, created=10),
    review(99, 404, 5, created=10),
]

REVIEW_ORDERS = {
    "-created_at": [16, 15, 12, 13, 11, 17],
    "-rating": [11, 15, 12, 13, 17, 16],
    "rating": [16, 12, 13, 17, 11, 15],
}


def settings(**overrides: Any) -> QuerySettings:
    """Settings that do not depend on the environment the tests run in."""
    values: dict[str, Any] = {
        "min_version_wait_seconds": 2.0,
        "min_version_poll_seconds": 0.01,
    }
    return QuerySettings(**{**values, **overrides})


@asynccontextmanager
async def query_api(fake: FakeReadModel, config: QuerySettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app over `fake`, its lifespan running as a server would run it."""
    app = create_app(config, read_model=fake)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://query.test") as client,
    ):
        yield client


# One app for the module: FastAPI prepares its routes on an app's first request, which costs
# more than most tests here. Each test still starts from the catalog, with the store answering.
@pytest.fixture(scope="module")
def shared_fake() -> FakeReadModel:
    return FakeReadModel()


@pytest.fixture(scope="module")
async def shared_client(shared_fake: FakeReadModel) -> AsyncIterator[httpx.AsyncClient]:
    async with query_api(shared_fake, settings()) as client:
        yield client


@pytest.fixture
def fake(shared_fake: FakeReadModel) -> FakeReadModel:
    shared_fake.reset(CATALOG, REVIEWS)
    return shared_fake


@pytest.fixture
def client(shared_client: httpx.AsyncClient, fake: FakeReadModel) -> httpx.AsyncClient:
    return shared_client


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return [int(item["id"][-12:]) for item in response.json()["items"]]


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status (and type); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert body["type"] == (f"{PROBLEM_TYPE_BASE}{slug}" if slug else "about:blank")
    return body


def assert_invalid(response: httpx.Response, field: str, location: str = "query") -> None:
    body = assert_problem(response, 422, "validation-error")
    assert {"field": field, "location": location} in [
        {"field": e["field"], "location": e["location"]} for e in body["errors"]
    ], body
    assert field in body["detail"]


# Lists


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [1, 3, 4, 8, 5, 6, 2]),
        ({"category": "tools"}, [1, 3, 4, 2]),
        ({"category": "Tools"}, []),
        ({"category": '{"$ne": null}'}, []),
        ({"in_stock": "true"}, [3, 4, 8, 5, 2]),
        ({"in_stock": "false"}, [1, 6]),
        ({"min_price": "12.50"}, [3, 4, 6, 2]),
        ({"max_price": "12.5"}, [1, 3, 8, 5, 2]),
        ({"min_price": "12.50", "max_price": "99.99"}, [3, 4, 2]),
        ({"min_price": "12.50", "max_price": "12.50"}, [3, 2]),
        ({"min_price": "0", "max_price": "0"}, [5]),
        ({"q": "alpha"}, [1, 3]),
        ({"q": "ALP", "in_stock": "true"}, [3]),
        ({"q": "% off ["}, [6]),
        ({"q": "."}, []),
        ({"status": "discontinued"}, [7, 9]),
        ({"status": "discontinued", "category": "retired"}, [9]),
        ({"status": "active", "category": "retired"}, []),
        ({"category": "tools", "in_stock": "true", "min_price": "10"}, [3, 4, 2]),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[int]
) -> None:
    assert ids(await client.get(PRODUCTS, params=params)) == expected


async def test_list_items_carry_the_contract_fields(client: httpx.AsyncClient) -> None:
    response = await client.get(PRODUCTS, params={"q": "Charlie"})
    assert response.json() == {
        "items": [
            {
                "id": pid(3),
                "name": "Charlie",
                "price": "12.50",
                "in_stock": True,
                "category": "tools",
                "rating_average": "4.50",
                "rating_count": 2,
            }
        ],
        "next_cursor": None,
    }


async def test_products_without_a_published_review_have_no_average(
    client: httpx.AsyncClient,
) -> None:
    items = (await client.get(PRODUCTS, params={"category": "garden"})).json()["items"]
    assert [(i["name"], i["rating_average"], i["rating_count"]) for i in items] == [
        ("Delta", None, 0),
        ("Echo", None, 0),
        ("Foxtrot", None, 0),
    ]


async def test_rating_order_puts_the_unrated_last_in_every_filter(
    client: httpx.AsyncClient,
) -> None:
    params = {"sort": "-rating"}
    assert ids(await client.get(PRODUCTS, params={**params, "in_stock": "true"})) == [2, 3, 4, 5, 8]
    assert ids(await client.get(PRODUCTS, params={**params, "status": "discontinued"})) == [7, 9]
    assert ids(await client.get(PRODUCTS, params={**params, "q": "alpha"})) == [3, 1]


async def test_a_new_review_moves_its_product_in_the_rating_order(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    params = {"sort": "-rating", "limit": "2"}
    first = await client.get(PRODUCTS, params=params)
    assert ids(first) == [2, 3]
    # Foxtrot, unrated and on the next page, becomes the best rated product meanwhile: the
    # cursor resumes after Charlie's place, so Foxtrot is not shown twice nor anything skipped.
    fake.put_review(review(61, 6, 5, created=60))
    rest = await client.get(PRODUCTS, params={**params, "cursor": first.json()["next_cursor"]})
    assert ids(rest) == [1, 4]
    assert ids(await client.get(PRODUCTS, params={"sort": "-rating"})) == [6, 2, 3, 1, 4, 5, 8]


@pytest.mark.parametrize("sort", list(ORDERS))
async def test_sorts_break_ties_by_id(client: httpx.AsyncClient, sort: str) -> None:
    assert ids(await client.get(PRODUCTS, params={"sort": sort})) == ORDERS[sort]


async def walk_pages(
    client: httpx.AsyncClient,
    url: str,
    numbers: Callable[[httpx.Response], list[int]],
    *,
    sort: str,
    limit: int,
) -> tuple[list[int], int]:
    """Follow `next_cursor` to the end: every item's number in order, and how many pages."""
    seen: list[int] = []
    pages = 0
    params = {"sort": sort, "limit": str(limit)}
    while True:
        response = await client.get(url, params=params)
        page = numbers(response)
        assert 0 < len(page) <= limit
        seen.extend(page)
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen, pages
        params["cursor"] = cursor


@pytest.mark.parametrize("sort", list(ORDERS))
@pytest.mark.parametrize("limit", [1, 2, 3, 6])
async def test_cursor_pages_neither_repeat_nor_skip(
    client: httpx.AsyncClient, sort: str, limit: int
) -> None:
    seen, pages = await walk_pages(client, PRODUCTS, ids, sort=sort, limit=limit)
    assert seen == ORDERS[sort]
    assert pages == -(-len(ORDERS[sort]) // limit)


async def test_cursor_keeps_to_the_filter(client: httpx.AsyncClient) -> None:
    params = {"category": "tools", "sort": "-price", "limit": "2"}
    first = await client.get(PRODUCTS, params=params)
    assert ids(first) == [4, 2]
    rest = await client.get(PRODUCTS, params={**params, "cursor": first.json()["next_cursor"]})
    assert ids(rest) == [3, 1]
    assert rest.json()["next_cursor"] is None


async def test_a_page_that_holds_the_rest_has_no_next_cursor(client: httpx.AsyncClient) -> None:
    response = await client.get(PRODUCTS, params={"limit": "7"})
    assert len(ids(response)) == 7
    assert response.json()["next_cursor"] is None


async def test_the_default_limit_is_50(fake: FakeReadModel, client: httpx.AsyncClient) -> None:
    for n in range(100, 160):
        fake.put(product(n, f"Item {n}", "bulk", "1.00", 1, updated=n))
    response = await client.get(PRODUCTS, params={"category": "bulk"})
    assert ids(response) == list(range(100, 150))
    assert response.json()["next_cursor"] is not None


def forged(payload: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("name", "not-a-cursor"),
        ("name", "!!!!"),
        ("name", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
        ("name", forged([1, 2])),
        ("name", forged({"s": "name", "v": "Alpha"})),
        ("name", encode_cursor("price", 500, pid(1))),
        ("price", encode_cursor("name", "Alpha", pid(1))),
        ("price", encode_cursor("price", "500", pid(1))),
        ("price", encode_cursor("price", True, pid(1))),
        ("price", encode_cursor("price", -1, pid(1))),
        # Past BSON's int64: the driver could not even encode the query.
        ("price", encode_cursor("price", 2**64 - 1, pid(1))),
        ("-updated_at", encode_cursor("-updated_at", 12, pid(1))),
        ("-rating", encode_cursor("-rating", "450", pid(1))),
        ("-rating", encode_cursor("-rating", 501, pid(1))),
        ("-rating", encode_cursor("-rating", -2, pid(1))),
        ("-rating", encode_cursor("-rating", 4.5, pid(1))),
        ("-rating", encode_cursor("-price", 450, pid(1))),
        # A reviews cursor of the sort key lists share.
        ("-rating", encode_cursor(review_cursor_tag("-rating"), 5, rid(1))),
        ("name", encode_cursor("name", "Alpha", "1")),
        ("name", encode_cursor("name", "Alpha", pid(1).replace("-", ""))),
        # No name holds a NUL: a cursor with one is forged, not a store outage (503).
        ("name", encode_cursor("name", "Al\x00pha", pid(1))),
        ("name", "x" * 1001),
    ],
)
async def test_a_cursor_the_api_did_not_issue_is_a_422(
    client: httpx.AsyncClient, sort: str, cursor: str
) -> None:
    response = await client.get(PRODUCTS, params={"sort": sort, "cursor": cursor})
    assert_invalid(response, "cursor")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"sort": "updated_at"}, "sort"),
        ({"sort": "rating"}, "sort"),
        ({"min_price": "cheap"}, "min_price"),
        ({"min_price": "-1"}, "min_price"),
        ({"min_price": "1.001"}, "min_price"),
        ({"min_price": "NaN"}, "min_price"),
        ({"min_price": "Infinity"}, "min_price"),
        ({"min_price": "1e40"}, "min_price"),
        ({"min_price": "1" * 21}, "min_price"),
        ({"max_price": "x"}, "max_price"),
        ({"min_price": "10", "max_price": "9.99"}, "max_price"),
        ({"status": "deleted"}, "status"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"category": ""}, "category"),
        ({"category": "c" * 101}, "category"),
        ({"category": "a\x00b"}, "category"),
        ({"q": ""}, "q"),
        ({"q": "q" * 201}, "q"),
        ({"cursor": ""}, "cursor"),
    ],
)
async def test_invalid_list_parameters_are_422_problems(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    assert_invalid(await client.get(PRODUCTS, params=params), field)


async def test_lists_have_no_etag_and_ignore_if_none_match(client: httpx.AsyncClient) -> None:
    response = await client.get(PRODUCTS, headers={"If-None-Match": "*"})
    assert response.status_code == 200
    assert "etag" not in response.headers


# Details


async def test_detail_has_every_contract_field_and_an_etag(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    response = await client.get(f"{PRODUCTS}/{pid(3)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # Version 1, and the revision of its review tally: a review changes the page.
    assert response.headers["etag"] == fake.etag(pid(3))
    assert response.headers["etag"].startswith('"1.')
    assert response.json() == {
        "id": pid(3),
        "name": "Charlie",
        "description": "The ALPHA successor",
        "category": "tools",
        "price": "12.50",
        "stock": 1,
        "in_stock": True,
        "status": "active",
        "version": 1,
        "created_at": "2026-11-26T12:00:00.000000Z",
        "updated_at": "2026-11-26T12:00:20.000000Z",
        "rating": {
            "count": 2,
            "average": "4.50",
            "distribution": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1},
        },
        "latest_reviews": [
            {
                "id": rid(32),
                "rating": 4,
                "title": "Review 32",
                "author": "author-32",
                "created_at": "2026-11-26T12:00:12.000000Z",
            },
            {
                "id": rid(31),
                "rating": 5,
                "title": "Review 31",
                "author": "author-31",
                "created_at": "2026-11-26T12:00:10.000000Z",
            },
        ],
    }


async def test_the_detail_rating_counts_published_reviews_only(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"{PRODUCTS}/{pid(1)}")).json()
    assert body["rating"] == {
        "count": 6,
        "average": "3.83",
        "distribution": {"1": 1, "2": 0, "3": 0, "4": 3, "5": 2},
    }
    # The newest five, newest first; 12 and 13 share their time, the higher id first.
    assert [r["id"] for r in body["latest_reviews"]] == [rid(n) for n in (16, 15, 13, 12, 11)]


@pytest.mark.parametrize("n", [5, 6])
async def test_a_product_without_published_reviews_has_an_empty_rating(
    client: httpx.AsyncClient, n: int
) -> None:
    body = (await client.get(f"{PRODUCTS}/{pid(n)}")).json()
    assert body["rating"] == {
        "count": 0,
        "average": None,
        "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
    }
    assert body["latest_reviews"] == []


async def test_a_new_review_shows_in_the_detail(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    fake.put_review(review(33, 3, 3, created=30))
    body = (await client.get(f"{PRODUCTS}/{pid(3)}")).json()
    assert (body["rating"]["count"], body["rating"]["average"]) == (3, "4.00")
    assert body["latest_reviews"][0]["id"] == rid(33)


async def test_a_discontinued_product_stays_readable(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{PRODUCTS}/{pid(7)}")
    assert response.status_code == 200
    assert response.json()["status"] == "discontinued"
    assert response.json()["description"] is None


async def test_an_unknown_product_is_a_404_problem(client: httpx.AsyncClient) -> None:
    path = f"{PRODUCTS}/{pid(404)}"
    body = assert_problem(await client.get(path), 404, "product-not-found")
    assert body["instance"] == path
    assert pid(404) in body["detail"]


async def test_an_id_that_is_no_uuid_is_a_422(client: httpx.AsyncClient) -> None:
    assert_invalid(await client.get(f"{PRODUCTS}/not-a-uuid"), "product_id", "path")


@pytest.mark.parametrize("if_none_match", ["{tag}", "W/{tag}", '"0", {tag}', "*"])
async def test_the_current_etag_is_a_304(
    fake: FakeReadModel, client: httpx.AsyncClient, if_none_match: str
) -> None:
    tag = fake.etag(pid(1))
    response = await client.get(
        f"{PRODUCTS}/{pid(1)}", headers={"If-None-Match": if_none_match.format(tag=tag)}
    )
    assert response.status_code == 304
    assert response.headers["etag"] == tag
    assert response.content == b""


async def test_a_stale_etag_gets_the_new_version(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    old = fake.etag(pid(1))
    fake.bump(pid(1))
    response = await client.get(f"{PRODUCTS}/{pid(1)}", headers={"If-None-Match": old})
    assert response.status_code == 200
    assert response.headers["etag"] == fake.etag(pid(1)) != old
    assert response.json()["version"] == 2


async def test_a_new_review_changes_the_etag_of_an_unchanged_product(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    # The version alone would answer 304 with the old rating.
    plain = f'"{fake.etag(pid(1)).strip(chr(34)).split(".")[0]}"'
    response = await client.get(f"{PRODUCTS}/{pid(1)}", headers={"If-None-Match": plain})
    assert response.status_code == 200
    assert response.headers["etag"] != plain


async def test_an_if_none_match_past_its_limit_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{PRODUCTS}/{pid(1)}", headers={"If-None-Match": "x" * 201})
    assert_invalid(response, "if-none-match", "header")


# Read-your-writes


async def test_min_version_already_reached_answers_at_once(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    fake.bump(pid(2))
    response = await client.get(f"{PRODUCTS}/{pid(2)}", params={"min_version": "1"})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert fake.reads[pid(2)] == 1


async def test_min_version_reached_while_waiting(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    async def project_after_the_first_read() -> None:
        while fake.reads[pid(2)] == 0:
            await asyncio.sleep(0.001)
        fake.bump(pid(2))

    response, _ = await asyncio.gather(
        client.get(f"{PRODUCTS}/{pid(2)}", params={"min_version": "2"}),
        project_after_the_first_read(),
    )
    assert response.status_code == 200
    assert response.headers["etag"] == fake.etag(pid(2))
    assert response.json()["version"] == 2
    assert fake.reads[pid(2)] >= 2


async def test_min_version_of_a_product_not_projected_yet_waits_for_it(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    async def project_after_the_first_read() -> None:
        while fake.reads[pid(10)] == 0:
            await asyncio.sleep(0.001)
        fake.put(product(10, "Juliett", "tools", "1.00", 1, updated=80))

    response, _ = await asyncio.gather(
        client.get(f"{PRODUCTS}/{pid(10)}", params={"min_version": "1"}),
        project_after_the_first_read(),
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Juliett"


@pytest.mark.parametrize("prefer", ["wait=0", "respond-async, wait=0", "WAIT=0; x=y"])
async def test_prefer_wait_0_answers_503_at_once_when_behind(
    fake: FakeReadModel, client: httpx.AsyncClient, prefer: str
) -> None:
    response = await client.get(
        f"{PRODUCTS}/{pid(2)}", params={"min_version": "3"}, headers={"Prefer": prefer}
    )
    body = assert_problem(response, 503, "read-model-behind")
    assert response.headers["retry-after"] == "1"
    assert body["current_version"] == 1
    assert "3" in body["detail"]
    assert fake.reads[pid(2)] == 1


async def test_min_version_of_an_unknown_product_is_a_503_not_a_404(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        f"{PRODUCTS}/{pid(404)}", params={"min_version": "1"}, headers={"Prefer": "wait=0"}
    )
    body = assert_problem(response, 503, "read-model-behind")
    assert "current_version" not in body


async def test_the_wait_is_bounded_by_the_setting(fake: FakeReadModel) -> None:
    bound = 0.05
    async with query_api(fake, settings(min_version_wait_seconds=bound)) as client:
        started = time.monotonic()
        # A preference for a longer wait does not extend the bound.
        response = await client.get(
            f"{PRODUCTS}/{pid(2)}", params={"min_version": "2"}, headers={"Prefer": "wait=10"}
        )
        elapsed = time.monotonic() - started
    assert_problem(response, 503, "read-model-behind")
    assert response.headers["retry-after"] == "1"
    assert bound <= elapsed < 1.5
    assert fake.reads[pid(2)] > 1


async def until(condition: Callable[[], bool]) -> None:
    """Return once `condition` holds; fail (TimeoutError) if it does not within 2 s."""
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.001)


async def test_waits_for_different_products_share_each_read(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    waited = [pid(n) for n in (1, 2, 3, 5, 6)]

    async def project_once_every_request_waits() -> int:
        # Each request read its product once before it waited.
        await until(lambda: all(fake.reads[key] >= 1 for key in waited))
        first_round = len(fake.many_reads)
        await until(lambda: len(fake.many_reads) > first_round)
        for key in waited:
            fake.bump(key)
        return first_round

    async with asyncio.timeout(5):
        *responses, first_round = await asyncio.gather(
            *(client.get(f"{PRODUCTS}/{key}", params={"min_version": "2"}) for key in waited),
            project_once_every_request_waits(),
        )
    assert [r.json()["version"] for r in responses] == [2] * len(waited)
    rounds = fake.many_reads[first_round:]
    # At least one round before the products moved on and the one that saw them: each read
    # every product waited for at once, however many requests waited.
    assert len(rounds) >= 2
    assert all(read == sorted(waited) for read in rounds)


async def test_a_store_failing_during_waits_is_a_503_problem_for_each(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    waited = [pid(1), pid(2), pid(2)]

    async def fail_once_every_request_waits() -> None:
        await until(lambda: fake.reads[pid(1)] >= 1 and fake.reads[pid(2)] >= 2)
        fake.unavailable = True

    async with asyncio.timeout(5):
        *responses, _ = await asyncio.gather(
            *(client.get(f"{PRODUCTS}/{key}", params={"min_version": "5"}) for key in waited),
            fail_once_every_request_waits(),
        )
    for response, key in zip(responses, waited, strict=True):
        body = assert_problem(response, 503, "read-model-unavailable")
        assert response.headers["retry-after"] == "1"
        assert body["instance"] == f"{PRODUCTS}/{key}"


async def test_a_wait_whose_client_is_gone_is_read_for_no_more(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    request = asyncio.create_task(client.get(f"{PRODUCTS}/{pid(2)}", params={"min_version": "9"}))
    await until(lambda: len(fake.many_reads) >= 1)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    reads = len(fake.many_reads)
    # Ten polls: a waiter left behind would have been read for again.
    await asyncio.sleep(10 * settings().min_version_poll_seconds)
    assert len(fake.many_reads) == reads


@pytest.mark.parametrize("min_version", ["0", "-1", "two", str(2**62 + 1)])
async def test_invalid_min_version_is_a_422(client: httpx.AsyncClient, min_version: str) -> None:
    response = await client.get(f"{PRODUCTS}/{pid(1)}", params={"min_version": min_version})
    assert_invalid(response, "min_version")


# Reviews


def reviews_of(n: int) -> str:
    return f"{PRODUCTS}/{pid(n)}/reviews"


def review_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return [int(item["id"][-12:]) for item in response.json()["items"]]


async def test_reviews_default_to_the_newest_first(client: httpx.AsyncClient) -> None:
    response = await client.get(reviews_of(1))
    assert review_ids(response) == REVIEW_ORDERS["-created_at"]
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize("sort", list(REVIEW_ORDERS))
async def test_review_sorts_break_ties_by_id(client: httpx.AsyncClient, sort: str) -> None:
    assert review_ids(await client.get(reviews_of(1), params={"sort": sort})) == REVIEW_ORDERS[sort]


@pytest.mark.parametrize("sort", list(REVIEW_ORDERS))
@pytest.mark.parametrize("limit", [1, 2, 4, 5])
async def test_review_pages_neither_repeat_nor_skip(
    client: httpx.AsyncClient, sort: str, limit: int
) -> None:
    seen, pages = await walk_pages(client, reviews_of(1), review_ids, sort=sort, limit=limit)
    assert seen == REVIEW_ORDERS[sort]
    assert pages == -(-len(REVIEW_ORDERS[sort]) // limit)


async def test_review_items_carry_the_contract_fields(client: httpx.AsyncClient) -> None:
    response = await client.get(reviews_of(1), params={"sort": "rating", "limit": "2"})
    assert response.json()["items"] == [
        {
            "id": rid(16),
            "rating": 1,
            "title": "Review 16",
            "body": "Broke at once.",
            "author": "author-16",
            "created_at": "2026-11-26T12:00:50.000000Z",
        },
        {
            "id": rid(12),
            "rating": 4,
            "title": "Review 12",
            "body": None,
            "author": "author-12",
            "created_at": "2026-11-26T12:00:20.000000Z",
        },
    ]
    assert isinstance(response.json()["next_cursor"], str)


@pytest.mark.parametrize(("n", "expected"), [(4, [41]), (5, []), (6, []), (7, [71])])
async def test_removed_reviews_are_left_out(
    client: httpx.AsyncClient, n: int, expected: list[int]
) -> None:
    response = await client.get(reviews_of(n))
    assert review_ids(response) == expected
    assert response.json()["next_cursor"] is None


async def test_a_removal_leaves_the_next_page_whole(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    first = await client.get(reviews_of(1), params={"limit": "2"})
    assert review_ids(first) == [16, 15]
    fake.put_review(review(16, 1, 1, created=50, status="removed"))
    rest = await client.get(reviews_of(1), params={"cursor": first.json()["next_cursor"]})
    assert review_ids(rest) == [12, 13, 11, 17]


async def test_the_default_review_limit_is_20(
    fake: FakeReadModel, client: httpx.AsyncClient
) -> None:
    for n in range(100, 125):
        fake.put_review(review(n, 8, 1 + n % 5, created=n))
    response = await client.get(reviews_of(8))
    assert review_ids(response) == list(range(124, 104, -1))
    rest = await client.get(reviews_of(8), params={"cursor": response.json()["next_cursor"]})
    assert review_ids(rest) == list(range(104, 99, -1))
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize("n", [404, 10])
async def test_reviews_of_a_product_not_in_the_read_model_are_a_404_problem(
    client: httpx.AsyncClient, n: int
) -> None:
    # 404 has a review in the read model already (its product event has not arrived).
    body = assert_problem(await client.get(reviews_of(n)), 404, "product-not-found")
    assert body["instance"] == reviews_of(n)
    assert pid(n) in body["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "created_at"}, "sort"),
        ({"sort": "name"}, "sort"),
        ({"sort": ""}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "x" * 1001}, "cursor"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": forged({"s": "reviews:-created_at", "v": "x"})}, "cursor"),
        # A list's cursor of the sort key reviews share.
        ({"sort": "-rating", "cursor": encode_cursor("-rating", 450, pid(1))}, "cursor"),
        (
            {"sort": "rating", "cursor": encode_cursor(review_cursor_tag("-rating"), 4, rid(1))},
            "cursor",
        ),
        (
            {"sort": "rating", "cursor": encode_cursor(review_cursor_tag("rating"), 6, rid(1))},
            "cursor",
        ),
        (
            {"sort": "rating", "cursor": encode_cursor(review_cursor_tag("rating"), 0, rid(1))},
            "cursor",
        ),
        (
            {"sort": "rating", "cursor": encode_cursor(review_cursor_tag("rating"), "4", rid(1))},
            "cursor",
        ),
        ({"cursor": encode_cursor(review_cursor_tag("-created_at"), 12, rid(1))}, "cursor"),
        ({"cursor": encode_cursor(review_cursor_tag("-created_at"), "a\x00", rid(1))}, "cursor"),
        ({"cursor": encode_cursor(review_cursor_tag("-created_at"), "2026", "r1")}, "cursor"),
    ],
)
async def test_invalid_review_parameters_are_422_problems(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    assert_invalid(await client.get(reviews_of(1), params=params), field)


async def test_reviews_of_an_id_that_is_no_uuid_are_a_422(client: httpx.AsyncClient) -> None:
    assert_invalid(await client.get(f"{PRODUCTS}/not-a-uuid/reviews"), "product_id", "path")


# Categories


async def test_categories_aggregate_the_active_products(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/categories")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [
        {
            "category": "garden",
            "product_count": 3,
            "in_stock_count": 2,
            "total_stock": 7,
            "min_price": "0.00",
            "max_price": "250.00",
        },
        {
            "category": "tools",
            "product_count": 4,
            "in_stock_count": 3,
            "total_stock": 14,
            "min_price": "5.00",
            "max_price": "99.99",
        },
    ]


# HEAD


@pytest.mark.parametrize(
    "path",
    [
        PRODUCTS,
        f"{PRODUCTS}?sort=-price&limit=2",
        f"{PRODUCTS}?sort=-rating&limit=2",
        f"{PRODUCTS}/{pid(1)}",
        f"{PRODUCTS}/{pid(1)}/reviews",
        f"{PRODUCTS}/{pid(1)}/reviews?sort=-rating&limit=2",
        "/api/v1/categories",
    ],
)
async def test_head_answers_like_get(client: httpx.AsyncClient, path: str) -> None:
    get, head = await client.get(path), await client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers.get("etag") == get.headers.get("etag")
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.content == b""


@pytest.mark.parametrize("path", [f"{PRODUCTS}/{pid(404)}", f"{PRODUCTS}/{pid(404)}/reviews"])
async def test_head_of_an_unknown_product_is_a_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.head(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE


# The store down, health


@pytest.fixture
def store_down(fake: FakeReadModel) -> None:
    fake.unavailable = True


@pytest.mark.usefixtures("store_down")
@pytest.mark.parametrize(
    "path",
    [
        PRODUCTS,
        f"{PRODUCTS}?category=tools&sort=price",
        f"{PRODUCTS}/{pid(1)}",
        f"{PRODUCTS}/{pid(1)}?min_version=1",
        f"{PRODUCTS}/{pid(1)}/reviews",
        f"{PRODUCTS}/{pid(1)}/reviews?sort=rating",
        "/api/v1/categories",
    ],
)
async def test_an_unavailable_read_model_is_a_503_problem(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    body = assert_problem(response, 503, "read-model-unavailable")
    assert response.headers["retry-after"] == "1"
    assert body["instance"] == path.split("?")[0]


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    healthz = await client.get("/healthz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    readyz = await client.get("/readyz")
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


@pytest.mark.usefixtures("store_down")
async def test_readyz_is_503_while_the_read_model_is_down(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    response = await client.get("/readyz")
    body = assert_problem(response, 503, "not-ready")
    assert response.headers["retry-after"] == "1"
    assert "ReadModelUnavailable" in body["checks"]["mongodb"]


async def test_the_openapi_document_describes_ratings_and_reviews(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"rating_average", "rating_count"} <= set(schemas["ProductSummary"]["required"])
    assert {"rating", "latest_reviews"} <= set(schemas["ProductDetail"]["required"])
    assert set(schemas["RatingDistribution"]["required"]) == {"1", "2", "3", "4", "5"}
    assert set(schemas["Review"]["required"]) == {
        "id",
        "rating",
        "title",
        "body",
        "author",
        "created_at",
    }
    reviews = document["paths"]["/api/v1/products/{product_id}/reviews"]
    assert set(reviews) == {"get", "head"}
    parameters = {p["name"]: p["schema"] for p in reviews["get"]["parameters"]}
    assert parameters["sort"]["enum"] == ["-created_at", "-rating", "rating"]
    assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 200)
    assert parameters["limit"]["default"] == 20
    assert "404" in reviews["get"]["responses"]
    list_parameters = document["paths"]["/api/v1/products"]["get"]["parameters"]
    list_sort = next(p["schema"] for p in list_parameters if p["name"] == "sort")
    assert "-rating" in list_sort["enum"]


async def test_an_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing"), 404)


async def test_a_command_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post(PRODUCTS, json={}), 405)
