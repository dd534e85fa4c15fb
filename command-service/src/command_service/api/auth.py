"""Bearer tokens on commands: JWTs signed with an asymmetric key, checked against a JWKS.

PyJWT does the cryptography; this module decides what is accepted. Only ES256 and RS256 are
allowed, so `alg: none` and a symmetric algorithm keyed with the public key are refused before
any signature is computed. The key set comes from a file or a URL, is cached, and is fetched
again when a token names an unknown `kid` (at most once per `refresh_interval`, so a flood of
made-up key ids cannot turn into a flood of fetches).

A token that verified is remembered for a minute (at most 4,096 of them), because clients send
the same token with every command and an ES256 verification costs more CPU than the rest of
the authentication: a remembered token is still refused once it expires or once its key is no
longer in the key set, and the cache is keyed by the whole token, signature included.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cachetools import TTLCache
from jwt import PyJWK, PyJWKSet

ALGORITHMS = ("ES256", "RS256")
WRITE_SCOPE = "catalog:write"
MODERATE_SCOPE = "catalog:moderate"
# Tokens that verified, remembered this long, this many at most (see the module's docstring).
REMEMBER_SECONDS = 60
REMEMBERED_TOKENS = 4096


class InvalidToken(Exception):
    """No token, or one that is malformed, expired, wrongly signed or not for this API."""


class MissingScope(Exception):
    """A valid token without the scope the command needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"the token lacks the scope {scope!r}")
        self.scope = scope


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for."""

    subject: str
    scopes: frozenset[str]

    def require(self, scope: str) -> Principal:
        """This principal, if it holds `scope`."""
        if scope not in self.scopes:
            raise MissingScope(scope)
        return self


class KeySet:
    """The verification keys, from a JWKS file or URL, cached and refreshed on an unknown kid."""

    def __init__(
        self, source: str | Path, *, refresh_interval: float = 30.0, timeout: float = 5.0
    ) -> None:
        self._source = source
        self._refresh_interval = refresh_interval
        self._timeout = timeout
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK:
        """The key named `kid`; InvalidToken when the key set does not hold it."""
        if kid not in self._keys:
            async with self._lock:
                if (
                    kid not in self._keys
                    and time.monotonic() - self._loaded_at >= self._refresh_interval
                ):
                    self._keys = await asyncio.to_thread(self._load)
                    self._loaded_at = time.monotonic()
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken(f"unknown key id {kid!r}") from None

    def holds(self, kid: str, key: PyJWK) -> bool:
        """Whether `key` is still the key set's key `kid` (false after a rotation dropped it)."""
        return self._keys.get(kid) is key

    def _load(self) -> dict[str, PyJWK]:
        if isinstance(self._source, Path):
            document: Any = json.loads(self._source.read_text())
        else:
            with urllib.request.urlopen(self._source, timeout=self._timeout) as response:
                document = json.loads(response.read())
        keys = PyJWKSet.from_dict(document).keys
        return {key.key_id: key for key in keys if key.key_id}


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that verified: whom it speaks for, with what key, and when it is valid."""

    principal: Principal
    kid: str
    key: PyJWK
    not_before: float
    expires: float


class TokenVerifier:
    """Checks signature, `iss`, `aud`, `exp`/`nbf` (with leeway) and reads `sub` and `scope`."""

    def __init__(self, keys: KeySet, *, issuer: str, audience: str, leeway: float = 30) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._verified: TTLCache[str, _Verified] = TTLCache(REMEMBERED_TOKENS, REMEMBER_SECONDS)

    async def verify(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer` header; InvalidToken otherwise."""
        if not authorization:
            raise InvalidToken("a bearer token is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        if (known := self._verified.get(token)) is not None:
            now = time.time()
            if (
                known.not_before - self._leeway <= now < known.expires + self._leeway
                and self._keys.holds(known.kid, known.key)
            ):
                return known.principal
            self._verified.pop(token, None)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
        if not isinstance(kid, str):
            raise InvalidToken("the token names no key id")
        key = await self._keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > 200:
            raise InvalidToken("the token's sub must be a non-empty string of at most 200")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("the token's scope must be a space-separated string")
        principal = Principal(subject, frozenset(scope.split()))
        not_before = claims.get("nbf")
        self._verified[token] = _Verified(
            principal,
            kid,
            key,
            float(not_before) if isinstance(not_before, int | float) else float("-inf"),
            float(claims["exp"]),
        )
        return principal
