"""Maps command-side errors to RFC 9457 problem documents; nothing expected ends as a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from starlette.responses import Response

from catalog_contracts.problems import Problem, problem, validation_problem
from command_service.api.auth import InvalidToken, MissingScope
from command_service.domain.errors import (
    DomainError,
    DuplicateReview,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidValue,
    ProductDiscontinued,
    ProductNotFound,
    ReviewAlreadyRemoved,
    ReviewNotFound,
    StockLimitExceeded,
    VersionMismatch,
)
from command_service.ports import StorageUnavailable
from service_runtime.problems import install_problem_handlers, problem_response

log = logging.getLogger(__name__)


def domain_problem(exc: DomainError, instance: str) -> Problem:
    """The problem document of a domain error."""
    match exc:
        case InvalidValue():
            return validation_problem(
                [{"loc": ("body", exc.field), "msg": exc.message, "type": "value_error"}],
                instance=instance,
            )
        case ProductNotFound():
            return problem(404, "product-not-found", str(exc), instance=instance)
        case ProductDiscontinued():
            return problem(409, "product-discontinued", str(exc), instance=instance)
        case InsufficientStock():
            return problem(
                409,
                "insufficient-stock",
                str(exc),
                instance=instance,
                available=exc.available,
                requested=exc.requested,
            )
        case ReviewNotFound():
            return problem(404, "review-not-found", str(exc), instance=instance)
        case ReviewAlreadyRemoved():
            return problem(409, "review-already-removed", str(exc), instance=instance)
        case DuplicateReview():
            return problem(
                409, "duplicate-review", str(exc), instance=instance, review_id=str(exc.existing)
            )
        case StockLimitExceeded():
            return problem(409, "stock-limit-exceeded", str(exc), instance=instance)
        case VersionMismatch():
            return problem(
                412, "version-mismatch", str(exc), instance=instance, current_version=exc.actual
            )
        case IdempotencyKeyReused():
            return problem(422, "idempotency-key-reused", str(exc), instance=instance)
        case IdempotencyKeyInFlight():
            return problem(409, "idempotency-key-in-flight", str(exc), instance=instance)
    return problem(400, None, str(exc), instance=instance)


def install_error_handlers(app: FastAPI) -> None:
    """Generic problem handlers plus the command side's own errors."""
    install_problem_handlers(app)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        doc = domain_problem(exc, request.url.path)
        headers = {"ETag": f'"{exc.actual}"'} if isinstance(exc, VersionMismatch) else None
        return problem_response(doc, headers)

    @app.exception_handler(InvalidToken)
    async def _unauthenticated(request: Request, exc: InvalidToken) -> Response:
        doc = problem(401, "invalid-token", str(exc), instance=request.url.path)
        return problem_response(doc, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @app.exception_handler(MissingScope)
    async def _forbidden(request: Request, exc: MissingScope) -> Response:
        doc = problem(403, "insufficient-scope", str(exc), instance=request.url.path)
        challenge = f'Bearer error="insufficient_scope", scope="{exc.scope}"'
        return problem_response(doc, {"WWW-Authenticate": challenge})

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable) -> Response:
        log.warning("write model unavailable: %s", exc)
        doc = problem(
            503,
            "storage-unavailable",
            "the write model is unavailable; retry later",
            instance=request.url.path,
        )
        return problem_response(doc, {"Retry-After": "1"})
