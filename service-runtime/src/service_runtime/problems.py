"""The HTTP edge where errors become RFC 9457 problem documents."""

from __future__ import annotations

import logging
from typing import Any

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

    document_problems(app)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers above do.

    FastAPI documents a 422 `HTTPValidationError` as application/json; this API answers every
    error, 422 included, with a problem document. Each 4xx/5xx response of each operation is
    documented as application/problem+json with the Problem schema, and every operation that
    takes input documents its 422.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components["Problem"] = definition
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                if operation.get("parameters") or operation.get("requestBody"):
                    responses.setdefault(
                        "422", {"description": "Invalid input (the problem names the field)"}
                    )
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = content
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
