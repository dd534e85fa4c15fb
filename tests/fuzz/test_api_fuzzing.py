"""schemathesis against both services' OpenAPI documents, called through the gateway.

No input may produce a 5xx, every error is an application/problem+json document, and every
response matches its documented schema. The number of examples is bounded for `make test`. The calls
carry DEV_TOKEN: unauthenticated commands would stop at the 401 and fuzz nothing behind it.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e

EXAMPLES = 20


def check(case: Any, infra: Infra) -> None:
    # Random ids never reach a min_version: answer at once (RFC 7240) instead of after 3 s.
    # Commands authenticate (DEV_TOKEN, both scopes), so the inputs reach the handlers.
    headers = {"Prefer": "wait=0", **infra.auth}
    response = case.call(base_url=infra.gateway_url, timeout=15, headers=headers)
    where = f"{case.method} {case.formatted_path} {case.query or ''} {case.body!r:.200}"
    assert response.status_code not in (401, 403), f"{where}: DEV_TOKEN refused"
    behind = response.status_code == 503 and "min_version" in (case.query or {})
    if behind:  # the documented answer when the read model has not reached that version
        assert response.headers.get("retry-after") in ("1", ["1"]), where
    else:
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type")
        if isinstance(content_type, list):
            content_type = content_type[0]
        assert content_type == "application/problem+json", f"{where}: {content_type}"
    # A schema-valid request may still be refused by the state it meets (a reused
    # Idempotency-Key is 422, a stale If-Match 412): that is the contract, not a failure.
    excluded = [positive_data_acceptance, *([not_a_server_error] if behind else [])]
    case.validate_response(response, excluded_checks=excluded)


@pytest.mark.parametrize("service", ["command", "query"])
def test_api_never_fails_on_any_input(infra: Infra, service: str) -> None:
    url = infra.command_url if service == "command" else infra.query_url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            check(case, infra)

        run()
