"""Nobody writes without a token, through the gateway of the running stack: every command without
a valid one is refused and changes nothing; DEV_TOKEN and `catalogctl token` (with the key
`make up` made) are what a developer calls the API with."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import PROBLEM
from tests.fixtures.cli import catalogctl
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e


def catalogctl_token(infra: Infra, *args: str) -> str:
    """`catalogctl token ARGS` configured by nothing but the stack's stack.env."""
    return catalogctl(infra, "token", *args).stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def write_model(database_url: str, product_id: str) -> tuple[int, int, int]:
    """The product's version, its reviews and its outbox rows."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT version FROM products WHERE id = $1),
                   (SELECT count(*) FROM reviews WHERE product_id = $1),
                   (SELECT count(*) FROM outbox WHERE aggregate_id = $1
                                                   OR message_key = $1)
            """,
            uuid.UUID(product_id),
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def commands(product_id: str, review_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    base = f"/api/v1/products/{product_id}"
    return [
        ("POST", "/api/v1/products", {"name": "X", "category": "x", "price": "1", "stock": 1}),
        ("PATCH", base, {"name": "renamed"}),
        ("PUT", f"{base}/price", {"price": "2.00"}),
        ("POST", f"{base}/stock-adjustments", {"quantity_change": -1}),
        ("POST", f"{base}/reviews", {"rating": 1, "title": "anonymous"}),
        ("DELETE", f"/api/v1/reviews/{review_id}", None),
        ("DELETE", base, None),
    ]


def test_every_command_without_a_valid_token_is_a_401_that_changes_nothing(
    client: httpx.Client, infra: Infra
) -> None:
    product_id = client.post(
        "/api/v1/products", json={"name": "Kept", "category": "auth", "price": "5", "stock": 5}
    ).json()["id"]
    review_id = client.post(
        f"/api/v1/products/{product_id}/reviews", json={"rating": 4, "title": "fine"}
    ).json()["id"]
    before = asyncio.run(write_model(infra.database_url, product_id))
    expired = catalogctl_token(infra, "--sub", "late", "--ttl", "-1")
    refusals = {"no token": {}, "expired": bearer(expired), "garbage": bearer("x.y.z")}
    with httpx.Client(base_url=infra.gateway_url, timeout=15) as anonymous:
        for what, headers in refusals.items():
            for method, path, body in commands(product_id, review_id):
                response = anonymous.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (what, method, path, response.text)
                assert response.headers["content-type"] == PROBLEM
                assert response.headers["www-authenticate"].startswith(
                    'Bearer error="invalid_token"'
                )
        # Queries stay public.
        assert anonymous.get(f"/api/v1/products/{product_id}").status_code == 200
    assert asyncio.run(write_model(infra.database_url, product_id)) == before


def test_catalogctl_mints_tokens_the_command_service_trusts(
    client: httpx.Client, infra: Infra
) -> None:
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    writer = bearer(catalogctl_token(infra, "--sub", subject, "--scope", "catalog:write"))
    created = client.post(
        "/api/v1/products",
        json={"name": "Minted", "category": "auth", "price": "5", "stock": 5},
        headers=writer,
    )
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    reviewed = client.post(
        f"/api/v1/products/{product_id}/reviews",
        json={"rating": 5, "title": "mine"},
        headers=writer,
    )
    assert reviewed.status_code == 201, reviewed.text
    review_id = reviewed.json()["id"]

    # Moderation needs its own scope: 403 with catalog:write only, then DEV_TOKEN (both).
    refused = client.delete(f"/api/v1/reviews/{review_id}", headers=writer)
    assert (refused.status_code, refused.headers["content-type"]) == (403, PROBLEM)
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert client.delete(f"/api/v1/reviews/{review_id}").status_code == 200

    async def actors() -> tuple[list[tuple[str, str]], str]:
        conn = await asyncpg.connect(infra.database_url)
        try:
            events = await conn.fetch(
                """
                SELECT event_type, payload->>'actor' AS actor FROM outbox
                 WHERE aggregate_id = $1 OR message_key = $1 ORDER BY id
                """,
                uuid.UUID(product_id),
            )
            author = await conn.fetchval(
                "SELECT author FROM reviews WHERE id = $1", uuid.UUID(review_id)
            )
        finally:
            await conn.close()
        return [(row["event_type"], row["actor"]) for row in events], str(author)

    events, author = asyncio.run(actors())
    assert author == subject
    assert events == [
        ("ProductCreated", subject),
        ("ReviewSubmitted", subject),
        ("ReviewRemoved", "dev"),
    ]
