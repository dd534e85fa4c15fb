"""Bearer tokens on the command API, tested as an attacker would: every token here is crafted
by the test (tampered, wrongly signed, expired, unsigned, HS256 with the public key, unknown
key id, missing scope), through the ASGI app over the in-memory write model."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from command_service.api.auth import InvalidToken, KeySet, TokenVerifier
from command_service.bootstrap import create_app
from command_service.settings import CommandSettings
from service_runtime.tokens import (
    DEV_ISSUER,
    MAX_LEEWAY,
    SigningKey,
    ensure_dev_credentials,
)
from tests.fixtures.fakes import FakeStore, FakeUnitOfWorkFactory

PRODUCT = {"name": "Kettle", "category": "kitchen", "price": "30.00", "stock": 3}
ISSUER, AUDIENCE = "catalog-test", "catalog-api"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks(*entries: tuple[Any, str, str]) -> dict[str, Any]:
    """A JWKS of public keys: (private key, kid, alg)."""
    keys = []
    for key, kid, alg in entries:
        algorithm = ECAlgorithm if alg == "ES256" else RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    return {"keys": keys}


def token(
    *,
    key: Any = EC_KEY,
    kid: str = "ec-1",
    alg: str = "ES256",
    sub: str = "ada",
    scope: str = "catalog:write",
    ttl: int = 300,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "iat": now}
    payload |= {"exp": now + ttl, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def client(tmp_path: Path, store: FakeStore) -> AsyncIterator[httpx.AsyncClient]:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"), (RSA_KEY, "rsa-1", "RS256"))))
    settings = CommandSettings(jwks_file=jwks_file, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    app = create_app(settings, uow_factory=FakeUnitOfWorkFactory(store))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://command.test") as http,
    ):
        yield http


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(value: str) -> str:
    """The same token with its payload's `sub` changed and the signature kept."""
    header, payload, signature = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


def unsigned(**claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "scope": "catalog:write"}
    payload |= {"exp": now + 300, **claims}
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "ec-1"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def hs256_with_the_public_key() -> str:
    public = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "ec-1"}
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "scope": "catalog:write"}
    payload["exp"] = int(time.time()) + 300
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


REFUSED = {
    "no header": {},
    "not bearer": {"Authorization": "Basic YWRhOnNlY3JldA=="},
    "empty bearer": {"Authorization": "Bearer "},
    "malformed": bearer("not.a.jwt"),
    "tampered payload": bearer(tampered(token())),
    "wrong key": bearer(token(key=OTHER_EC_KEY)),
    "expired": bearer(token(ttl=-120)),
    "not yet valid": bearer(token(nbf=int(time.time()) + 600)),
    "wrong audience": bearer(token(aud="another-api")),
    "wrong issuer": bearer(token(iss="someone-else")),
    "no subject": bearer(token(sub="")),
    "unknown key id": bearer(token(kid="ec-404")),
    "alg none": bearer(unsigned()),
    "HS256 keyed with the public key": bearer(hs256_with_the_public_key()),
}


@pytest.mark.parametrize("headers", list(REFUSED.values()), ids=list(REFUSED))
async def test_every_bad_token_is_a_401_and_writes_nothing(
    client: httpx.AsyncClient, store: FakeStore, headers: dict[str, str]
) -> None:
    response = await client.post("/api/v1/products", json=PRODUCT, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["status"] == 401
    assert store.products == {}
    assert store.outbox == []


async def test_a_valid_token_without_the_scope_is_a_403(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    response = await client.post(
        "/api/v1/products", json=PRODUCT, headers=bearer(token(scope="catalog:read"))
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert store.products == {}


@pytest.mark.parametrize(
    ("key", "kid", "alg"), [(EC_KEY, "ec-1", "ES256"), (RSA_KEY, "rsa-1", "RS256")]
)
async def test_a_valid_token_is_the_events_actor(
    client: httpx.AsyncClient, store: FakeStore, key: Any, kid: str, alg: str
) -> None:
    response = await client.post(
        "/api/v1/products", json=PRODUCT, headers=bearer(token(key=key, kid=kid, alg=alg))
    )
    assert response.status_code == 201, response.text
    assert store.outbox[-1].event.actor == "ada"


async def test_the_token_subject_writes_the_review_and_moderation_needs_its_scope(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    writer = bearer(token(sub="ada"))
    product_id = (await client.post("/api/v1/products", json=PRODUCT, headers=writer)).json()["id"]
    review = await client.post(
        f"/api/v1/products/{product_id}/reviews",
        json={"rating": 5, "title": "Boils fast"},
        headers=writer,
    )
    assert review.status_code == 201, review.text
    assert store.reviews[UUID(review.json()["id"])].author == "ada"
    url = f"/api/v1/reviews/{review.json()['id']}"
    assert (await client.delete(url, headers=writer)).status_code == 403
    moderator = bearer(token(sub="mod", scope="catalog:write catalog:moderate"))
    assert (await client.delete(url, headers=moderator)).status_code == 200
    assert store.outbox[-1].event.actor == "mod"


async def test_idempotency_keys_belong_to_the_tokens_subject(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    key = {"Idempotency-Key": "same-key"}
    ada = await client.post("/api/v1/products", json=PRODUCT, headers={**bearer(token()), **key})
    bob = await client.post(
        "/api/v1/products", json=PRODUCT, headers={**bearer(token(sub="bob")), **key}
    )
    again = await client.post("/api/v1/products", json=PRODUCT, headers={**bearer(token()), **key})
    assert (ada.status_code, bob.status_code, again.status_code) == (201, 201, 201)
    assert ada.json()["id"] != bob.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(store.products) == 2


async def test_queries_of_the_command_side_stay_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200


async def test_an_unknown_kid_fetches_the_key_set_again_but_not_more_often_than_allowed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"))))
    eager = KeySet(path, refresh_interval=0)
    await eager.key("ec-1")
    path.write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"), (OTHER_EC_KEY, "ec-2", "ES256"))))
    assert (await eager.key("ec-2")).key_id == "ec-2"

    bounded = KeySet(path, refresh_interval=3600)
    await bounded.key("ec-1")
    path.write_text(json.dumps(jwks((OTHER_EC_KEY, "ec-3", "ES256"))))
    with pytest.raises(InvalidToken):
        await bounded.key("ec-3")  # not fetched again within the hour


def test_the_command_api_refuses_to_start_without_a_key_set() -> None:
    with pytest.raises(ValueError, match="COMMAND_JWKS_URL"):
        create_app(CommandSettings(), uow_factory=FakeUnitOfWorkFactory(FakeStore()))


# ------------------------------------------------------------ the development issuer


async def test_development_tokens_are_what_the_verifier_accepts(tmp_path: Path) -> None:
    key = SigningKey.ensure(tmp_path)
    assert SigningKey.ensure(tmp_path).kid == key.kid  # kept, not replaced
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    verifier = TokenVerifier(KeySet(tmp_path / "jwks.json"), issuer=DEV_ISSUER, audience=AUDIENCE)
    principal = await verifier.verify(f"Bearer {key.mint('ops', ['catalog:write'])}")
    assert (principal.subject, principal.scopes) == ("ops", frozenset({"catalog:write"}))


@pytest.mark.parametrize("ttl", [-1, -60])
async def test_a_negative_ttl_is_expired_whatever_the_leeway(tmp_path: Path, ttl: int) -> None:
    key = SigningKey.ensure(tmp_path)
    verifier = TokenVerifier(
        KeySet(tmp_path / "jwks.json"), issuer=DEV_ISSUER, audience=AUDIENCE, leeway=MAX_LEEWAY
    )
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(f"Bearer {key.mint('late', ['catalog:write'], ttl=ttl)}")


def test_the_dev_token_has_both_scopes_for_dev(tmp_path: Path) -> None:
    token = ensure_dev_credentials(tmp_path)
    assert (tmp_path / "dev-token").read_text().strip() == token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"], claims["aud"]) == (
        "dev",
        "catalog:write catalog:moderate",
        "catalog-api",
    )


# ------------------------------------------------------------ remembered tokens


async def test_a_remembered_token_still_expires(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"))))
    verifier = TokenVerifier(
        KeySet(tmp_path / "jwks.json"), issuer=ISSUER, audience=AUDIENCE, leeway=0
    )
    short = token(ttl=1)
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    assert (await verifier.verify(f"Bearer {short}")).subject == "ada"
    assert (await verifier.verify(f"Bearer {short}")).subject == "ada"  # remembered
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(f"Bearer {short}")


async def test_a_remembered_token_is_refused_once_its_key_is_rotated_out(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"))))
    verifier = TokenVerifier(KeySet(path, refresh_interval=0), issuer=ISSUER, audience=AUDIENCE)
    old = token()
    await verifier.verify(f"Bearer {old}")
    path.write_text(json.dumps(jwks((OTHER_EC_KEY, "ec-2", "ES256"))))
    # A token of the new key makes the key set reload, without the old key.
    await verifier.verify(f"Bearer {token(key=OTHER_EC_KEY, kid='ec-2')}")
    with pytest.raises(InvalidToken, match="unknown key id"):
        await verifier.verify(f"Bearer {old}")


async def test_a_token_differing_in_its_signature_is_not_the_remembered_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps(jwks((EC_KEY, "ec-1", "ES256"))))
    verifier = TokenVerifier(KeySet(tmp_path / "jwks.json"), issuer=ISSUER, audience=AUDIENCE)
    good = token()
    await verifier.verify(f"Bearer {good}")
    head, body, _ = good.split(".")
    forged = jwt.encode(
        jwt.decode(good, options={"verify_signature": False}),
        OTHER_EC_KEY,
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    assert forged.split(".")[:2] == [head, body]
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        await verifier.verify(f"Bearer {forged}")
