"""Fixtures of the end-to-end tests: an HTTP client of the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.infra import Infra

PROBLEM = "application/problem+json"


@pytest.fixture
def client(infra: Infra) -> Iterator[httpx.Client]:
    """A client of the gateway, as any API user would hold one: with DEV_TOKEN."""
    with httpx.Client(base_url=infra.gateway_url, timeout=15, headers=infra.auth) as c:
        yield c
