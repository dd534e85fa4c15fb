"""RFC 9457 problem details: the error document both HTTP APIs answer with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://catalog-cqrs.dev/problems/"


class FieldError(BaseModel):
    """One invalid input: which field (or parameter / header), and what is wrong with it."""

    field: str
    location: str
    message: str


class Problem(BaseModel):
    """A problem document; `errors` lists invalid fields on 422."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem(
    status: int,
    slug: str | None,
    detail: str | None,
    *,
    instance: str | None = None,
    **extensions: Any,
) -> Problem:
    """A problem document of an HTTP status, typed by `slug` (None: about:blank)."""
    return Problem(
        type=f"{PROBLEM_TYPE_BASE}{slug}" if slug else "about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        **extensions,
    )


_LOCATIONS = {"body": "body", "query": "query", "path": "path", "header": "header"}


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Field errors from pydantic/FastAPI validation errors (`loc`, `msg`, `type`)."""
    result = []
    for error in errors:
        loc: Sequence[Any] = error.get("loc", ())
        location = "body"
        parts = list(loc)
        if parts and parts[0] in _LOCATIONS:
            location = _LOCATIONS[parts.pop(0)]
        # Discriminated unions and function validators add non-field segments.
        parts = [
            p for p in parts if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        ]
        name = ".".join(str(p) for p in parts) or location
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        elif error.get("type") == "json_invalid":
            name, message = "body", f"is not valid JSON ({error.get('ctx', {}).get('error', '')})"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        result.append(FieldError(field=name, location=location, message=message))
    return result


def validation_problem(errors: Iterable[Mapping[str, Any]], *, instance: str | None) -> Problem:
    """The 422 problem naming every invalid field."""
    fields = field_errors(errors)
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields) or "invalid request"
    return problem(422, "validation-error", detail, instance=instance, errors=fields)
