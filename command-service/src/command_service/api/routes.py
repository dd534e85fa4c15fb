"""Command endpoints: parse the request into a command, await one handler, return the result."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any
from uuid import UUID, uuid4

import orjson
from fastapi import APIRouter, Body, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from command_service.api.auth import MODERATE_SCOPE, WRITE_SCOPE, TokenVerifier
from command_service.api.schemas import (
    AdjustStockRequest,
    ChangePriceRequest,
    CommandAccepted,
    CreateProductRequest,
    DiscontinueRequest,
    RemoveReviewRequest,
    ReviewAccepted,
    StockAdjusted,
    SubmitReviewRequest,
    UpdateDetailsRequest,
)
from command_service.domain.model import DetailField
from command_service.handlers import (
    AdjustStock,
    ChangePrice,
    CommandHandlers,
    CommandResult,
    CreateProduct,
    Discontinue,
    RemoveReview,
    RequestContext,
    SubmitReview,
    UpdateDetails,
)
from service_runtime.logs import bound

router = APIRouter(prefix="/api/v1", tags=["commands"])

# The product's version; the query side's page tag may add ".<review tally revision>", which
# a change of the product does not depend on.
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})(?:\.\d{1,18})?"?\s*$')
# An If-Match that names no version this API issues can never match.
_UNMATCHABLE = -1


# Dependencies are coroutines: FastAPI runs a plain `def` dependency in a worker thread, and
# those thread hops were a fifth of the service's CPU under load.
async def get_handlers(request: Request) -> CommandHandlers:
    handlers: CommandHandlers = request.app.state.handlers
    return handlers


async def get_context(
    if_match: Annotated[str | None, Header()] = None,
    x_correlation_id: Annotated[str | None, Header(max_length=200)] = None,
    x_request_id: Annotated[str | None, Header(max_length=200)] = None,
    x_causation_id: Annotated[str | None, Header(max_length=200)] = None,
    traceparent: Annotated[str | None, Header(max_length=55)] = None,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> RequestContext:
    expected: int | None = None
    if if_match is not None and if_match.strip() != "*":
        match = _ETAG.match(if_match)
        expected = int(match[1]) if match else _UNMATCHABLE
    return RequestContext(
        correlation_id=x_correlation_id or x_request_id or bound("correlation_id") or str(uuid4()),
        causation_id=x_causation_id,
        traceparent=traceparent,
        expected_version=expected,
        idempotency_key=idempotency_key,
    )


# Documents the scheme in OpenAPI (the interactive docs' "Authorize"); the verifier decides.
BEARER = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="A JWT from the identity provider"
)


def authenticated(scope: str) -> Callable[..., Awaitable[RequestContext]]:
    """A dependency: the request's context with the caller of its bearer token, which must
    hold `scope`; the token's `sub` is the caller, the events' actor and a review's author."""

    async def dependency(
        request: Request,
        context: Annotated[RequestContext, Depends(get_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> RequestContext:
        verifier: TokenVerifier = request.app.state.verifier
        authorization = f"Bearer {credentials.credentials}" if credentials else None
        principal = (await verifier.verify(authorization)).require(scope)
        return replace(context, caller=principal.subject, actor=principal.subject)

    return dependency


Handlers = Annotated[CommandHandlers, Depends(get_handlers)]
Context = Annotated[RequestContext, Depends(authenticated(WRITE_SCOPE))]
ModerationContext = Annotated[RequestContext, Depends(authenticated(MODERATE_SCOPE))]
ProductId = Annotated[UUID, "product id"]

_CONFLICTS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or one that is invalid or expired"},
    403: {"description": "The token lacks the command's scope"},
    404: {"description": "Unknown product"},
    409: {"description": "Discontinued product, insufficient stock or key in flight"},
    412: {"description": "If-Match names a stale version"},
    413: {"description": "Body larger than 64 KiB"},
    422: {"description": "Invalid field (named in the problem document)"},
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    """The response itself, serialized once by orjson.

    `response_model` still documents the body in OpenAPI; returning a Response skips FastAPI's
    validate-then-encode pass over a body the handler has just built from the domain.
    """
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _render(
    result: CommandResult, body: dict[str, Any] | None = None, *, resource: str = "products"
) -> Response:
    """The response of a command's outcome, the same for its first request and every replay."""
    outcome = result.outcome
    headers = {"ETag": f'"{outcome.version}"'}
    if outcome.created:
        headers["Location"] = f"/api/v1/{resource}/{outcome.aggregate_id}"
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return _json(
        201 if outcome.created else 200,
        {"id": str(outcome.aggregate_id), "version": outcome.version, **(body or {})},
        headers,
    )


@router.post(
    "/products",
    status_code=201,
    response_model=CommandAccepted,
    responses=_CONFLICTS,
    summary="Create a product",
)
async def create_product(body: CreateProductRequest, handlers: Handlers, context: Context) -> Any:
    command = CreateProduct(
        name=body.name,
        description=body.description,
        category=body.category,
        price=body.price,
        stock=body.stock,
    )
    return _render(await handlers.create_product(command, context))


@router.patch(
    "/products/{product_id}",
    response_model=CommandAccepted,
    responses=_CONFLICTS,
    summary="Change name, description or category",
)
async def update_details(
    product_id: ProductId,
    body: UpdateDetailsRequest,
    handlers: Handlers,
    context: Context,
) -> Response:
    changes: dict[DetailField, str | None] = body.model_dump(exclude_unset=True)  # type: ignore[assignment]
    result = await handlers.update_details(UpdateDetails(product_id, changes), context)
    return _render(result)


@router.put(
    "/products/{product_id}/price",
    response_model=CommandAccepted,
    responses=_CONFLICTS,
    summary="Set the price",
)
async def change_price(
    product_id: ProductId,
    body: ChangePriceRequest,
    handlers: Handlers,
    context: Context,
) -> Response:
    result = await handlers.change_price(ChangePrice(product_id, body.price), context)
    return _render(result)


@router.post(
    "/products/{product_id}/stock-adjustments",
    response_model=StockAdjusted,
    responses=_CONFLICTS,
    summary="Add or remove stock",
)
async def adjust_stock(
    product_id: ProductId,
    body: AdjustStockRequest,
    handlers: Handlers,
    context: Context,
) -> Response:
    result = await handlers.adjust_stock(
        AdjustStock(product_id, body.quantity_change, body.reason), context
    )
    return _render(result, {"stock": result.outcome.stock})


@router.delete(
    "/products/{product_id}",
    response_model=CommandAccepted,
    responses=_CONFLICTS,
    summary="Discontinue a product",
)
async def discontinue(
    product_id: ProductId,
    handlers: Handlers,
    context: Context,
    body: Annotated[DiscontinueRequest | None, Body()] = None,
) -> Response:
    reason = body.reason if body else None
    result = await handlers.discontinue(Discontinue(product_id, reason), context)
    return _render(result)


_REVIEW_CONFLICTS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or one that is invalid or expired"},
    403: {"description": "The token lacks the command's scope"},
    404: {"description": "Unknown product or review"},
    409: {
        "description": "Discontinued product, the author's published review exists, review "
        "already removed, or key in flight"
    },
    412: {"description": "If-Match names a stale version"},
    413: {"description": "Body larger than 64 KiB"},
    422: {"description": "Invalid field (named in the problem document)"},
}


@router.post(
    "/products/{product_id}/reviews",
    status_code=201,
    response_model=ReviewAccepted,
    responses=_REVIEW_CONFLICTS,
    summary="Review a product",
    tags=["reviews"],
)
async def submit_review(
    product_id: ProductId,
    body: SubmitReviewRequest,
    handlers: Handlers,
    context: Context,
) -> Response:
    # The author is the token's subject (authenticated() made it the caller).
    command = SubmitReview(product_id, body.rating, body.title, body.body, context.caller)
    result = await handlers.submit_review(command, context)
    return _render(result, {"product_id": str(result.outcome.product_id)}, resource="reviews")


@router.delete(
    "/reviews/{review_id}",
    response_model=CommandAccepted,
    responses=_REVIEW_CONFLICTS,
    summary="Remove a review (moderation)",
    tags=["reviews"],
)
async def remove_review(
    review_id: Annotated[UUID, "review id"],
    handlers: Handlers,
    context: ModerationContext,
    body: Annotated[RemoveReviewRequest | None, Body()] = None,
) -> Response:
    reason = body.reason if body else None
    return _render(await handlers.remove_review(RemoveReview(review_id, reason), context))
