"""The HTTP edge where errors become RFC 9457 problem documents."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from catalog_contracts.problems import PROBLEM_CONTENT_TYPE, Problem, problem, validation_problem

log = logging.getLogger(__name__)


def problem_response(doc: Problem, headers: dict[str, str] | None = None) -> Response:
    """A problem document as an application/problem+json response."""
    return Response(
        orjson.dumps(doc.model_dump(exclude_none=True)),
        status_code=doc.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Validation errors, HTTP errors and anything unexpected all answer with problem+json."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc.errors(), instance=request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        doc = problem(exc.status_code, None, str(exc.detail), instance=request.url.path)
        return problem_response(doc, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(problem(500, None, "internal error", instance=request.url.path))
