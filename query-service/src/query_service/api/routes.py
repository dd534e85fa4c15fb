"""Query endpoints: validate parameters, read the read model, shape the response."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from catalog_contracts.money import PriceError, parse_price, price_to_cents
from catalog_contracts.problems import problem
from query_service.api.schemas import CategoryStats, ProductDetail, ProductPage, ReviewPage
from query_service.ports import InvalidCursor, ProductFilter, ReadModel, ReviewSortKey, SortKey
from query_service.settings import QuerySettings
from query_service.waiters import VersionWaiters, reached
from service_runtime.problems import problem_response

router = APIRouter(prefix="/api/v1", tags=["queries"])
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def get_and_head(path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """Register an endpoint for GET and HEAD as two operations, each with its own OpenAPI id."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.head(path, **options)(endpoint)
        return router.get(path, **options)(endpoint)

    return register


def get_read_model(request: Request) -> ReadModel:
    """The read model the composition root put in the app state."""
    model: ReadModel = request.app.state.read_model
    return model


def get_settings(request: Request) -> QuerySettings:
    """The settings the app was created with."""
    settings: QuerySettings = request.app.state.settings
    return settings


def get_version_waiters(request: Request) -> VersionWaiters:
    """The process's read-your-writes waits, which the composition root opened."""
    waiters: VersionWaiters = request.app.state.version_waiters
    return waiters


ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
SettingsDep = Annotated[QuerySettings, Depends(get_settings)]
VersionWaitersDep = Annotated[VersionWaiters, Depends(get_version_waiters)]

_JSON = "application/json"


def _invalid(parameter: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", parameter), "msg": message, "type": "value_error"}]
    )


def _cents(parameter: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return price_to_cents(parse_price(value))
    except PriceError as exc:
        raise _invalid(parameter, str(exc)) from None


@get_and_head("/products", response_model=ProductPage, summary="List products")
async def list_products(
    read_model: ReadModelDep,
    category: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    in_stock: bool | None = None,
    min_price: Annotated[str | None, Query(max_length=20)] = None,
    max_price: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    status: Literal["active", "discontinued"] = "active",
    sort: SortKey = "name",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
) -> Response:
    # No product's category holds a NUL (PostgreSQL text cannot), and a store may fail on one in
    # a filter: a 503 would have the client retry what can never succeed.
    if category is not None and "\x00" in category:
        raise _invalid("category", "must not contain NUL characters")
    low, high = _cents("min_price", min_price), _cents("max_price", max_price)
    if low is not None and high is not None and low > high:
        raise _invalid("max_price", "must not be below min_price")
    where = ProductFilter(
        status=status,
        category=category,
        in_stock=in_stock,
        min_price_cents=low,
        max_price_cents=high,
        q=q,
    )
    try:
        page = await read_model.list_products(where, sort=sort, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise _invalid("cursor", str(exc)) from None
    items = [
        {
            "id": d["_id"],
            "name": d["name"],
            "price": d["price"],
            "in_stock": d["in_stock"],
            "category": d["category"],
            "rating_average": d["rating_average"],
            "rating_count": d["rating_count"],
        }
        for d in page.items
    ]
    return Response(
        orjson.dumps({"items": items, "next_cursor": page.next_cursor}), media_type=_JSON
    )


def _not_found(request: Request, product_id: str) -> Response:
    return problem_response(
        problem(
            404,
            "product-not-found",
            f"product {product_id} does not exist",
            instance=request.url.path,
        )
    )


def _detail(document: dict[str, Any]) -> dict[str, Any]:
    rating = document["rating"]
    return {
        "id": document["_id"],
        "name": document["name"],
        "description": document.get("description"),
        "category": document["category"],
        "price": document["price"],
        "stock": document["stock"],
        "in_stock": document["in_stock"],
        "status": document["status"],
        "version": document["version"],
        "created_at": document["created_at"],
        "updated_at": document["updated_at"],
        "rating": {
            "count": rating["count"],
            "average": rating["average"],
            # Every star count is in the response schema, a star nobody gave included.
            "distribution": {stars: rating["distribution"].get(stars, 0) for stars in "12345"},
        },
        "latest_reviews": [
            {
                "id": r["id"],
                "rating": r["rating"],
                "title": r["title"],
                "author": r["author"],
                "created_at": r["created_at"],
            }
            for r in document["latest_reviews"]
        ],
    }


def _preferred_wait(prefer: str | None) -> float:
    """The `wait` preference of an RFC 7240 Prefer header, in seconds (inf when absent).

    Preferences the server does not understand are ignored, as the RFC asks.
    """
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].partition("=")
        value = value.strip()
        if name.strip().lower() == "wait" and value.isascii() and value.isdigit():
            return float(value)
    return float("inf")


def _detail_etag(document: dict[str, Any]) -> str:
    """The page's entity tag: the product's version, and its review tally's revision once it has
    one (a review changes the page, not the product's version). Commands read the version part
    of an If-Match, so this tag is also what a client sends back to change the product."""
    rating_rev = document.get("rating_rev", 0)
    return f'"{document["version"]}.{rating_rev}"' if rating_rev else f'"{document["version"]}"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


@get_and_head(
    "/products/{product_id}",
    response_model=ProductDetail,
    summary="One product",
    responses={
        304: {"description": "Not modified"},
        404: {"description": "Unknown product"},
        503: {"description": "min_version not reached in time"},
    },
)
async def get_product(
    request: Request,
    product_id: UUID,
    read_model: ReadModelDep,
    settings: SettingsDep,
    version_waiters: VersionWaitersDep,
    min_version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
    prefer: Annotated[
        str | None,
        Header(max_length=200, description="RFC 7240 `wait=N`: wait at most N s for min_version"),
    ] = None,
) -> Response:
    key = str(product_id)
    # Read at once: a version already there is answered without waiting for the next round.
    document = await read_model.get(key)
    if min_version is not None and not reached(document, min_version):
        wait = min(settings.min_version_wait_seconds, _preferred_wait(prefer))
        if wait > 0:
            deadline = time.monotonic() + wait
            document = await version_waiters.wait(key, min_version, deadline)
        if not reached(document, min_version):
            current = None if document is None else document["version"]
            return problem_response(
                problem(
                    503,
                    "read-model-behind",
                    f"the read model has not reached version {min_version} yet",
                    instance=request.url.path,
                    current_version=current,
                ),
                {"Retry-After": "1"},
            )
    if document is None:
        return _not_found(request, key)
    etag = _detail_etag(document)
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(orjson.dumps(_detail(document)), media_type=_JSON, headers={"ETag": etag})


@get_and_head(
    "/products/{product_id}/reviews",
    response_model=ReviewPage,
    summary="A product's published reviews",
    responses={404: {"description": "Unknown product"}},
)
async def list_reviews(
    request: Request,
    product_id: UUID,
    read_model: ReadModelDep,
    sort: ReviewSortKey = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
) -> Response:
    key = str(product_id)
    try:
        page = await read_model.reviews(key, sort=sort, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise _invalid("cursor", str(exc)) from None
    if page is None:
        return _not_found(request, key)
    items = [
        {
            "id": d["_id"],
            "rating": d["rating"],
            "title": d["title"],
            "body": d["body"],
            "author": d["author"],
            "created_at": d["created_at"],
        }
        for d in page.items
    ]
    return Response(
        orjson.dumps({"items": items, "next_cursor": page.next_cursor}), media_type=_JSON
    )


@get_and_head(
    "/categories",
    response_model=list[CategoryStats],
    summary="Category statistics",
)
async def list_categories(read_model: ReadModelDep) -> Response:
    rows = [
        {
            "category": d["_id"],
            "product_count": d["product_count"],
            "in_stock_count": d["in_stock_count"],
            "total_stock": d["total_stock"],
            "min_price": d["min_price"],
            "max_price": d["max_price"],
        }
        for d in await read_model.categories()
    ]
    return Response(orjson.dumps(rows), media_type=_JSON)
