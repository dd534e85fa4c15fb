"""A development token issuer: an ES256 signing key, its JWKS, and tokens minted with it.

Locally there is no identity provider: `make up` (and compose's `dev-keys` one-shot) keep a
signing key of their own, give the command service its public half as a JWKS, and mint
`DEV_TOKEN`; `catalogctl token` mints more with the same key. In production an identity
provider issues the tokens and the command service only reads its JWKS URL; nothing here runs.

PyJWT and `cryptography` do the cryptography. The key id is the key's RFC 7638 thumbprint, so
the same key always has the same `kid` and a new key never collides with an old one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"
DEV_ISSUER = "catalog-dev"
AUDIENCE = "catalog-api"
DEV_SUBJECT = "dev"
DEV_SCOPES = ("catalog:write", "catalog:moderate")
MAX_LEEWAY = 300  # the most clock leeway the command service may be configured with
DEV_TOKEN_TTL = 30 * 24 * 3600  # a month: a development stack's token outlives a working day

KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
TOKEN_FILE = "dev-token"


class SigningKey:
    """A P-256 private key that signs ES256 tokens, and the JWKS of its public half."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 key")
        self._key = private_key
        self.public_jwk: dict[str, Any] = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.kid = _thumbprint(self.public_jwk)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The key of a PEM file (PKCS#8, unencrypted)."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read a signing key from {path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} holds no elliptic-curve key")
        return cls(key)

    @classmethod
    def ensure(cls, directory: Path) -> SigningKey:
        """The key kept in `directory` (generated on first use), with its JWKS written beside it.

        The private key file is readable by its owner only; the JWKS is public.
        """
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / KEY_FILE
        if path.exists():
            key = cls.load(path)
        else:
            key = cls.generate()
            pem = key._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_private(path, pem)
        _replace(directory / JWKS_FILE, json.dumps(key.jwks(), indent=2) + "\n")
        return key

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set the command service verifies tokens with."""
        return {"keys": [{**self.public_jwk, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}]}

    def mint(
        self,
        subject: str,
        scopes: tuple[str, ...] | list[str],
        *,
        ttl: int = 3600,
        issuer: str = DEV_ISSUER,
        audience: str = AUDIENCE,
        now: float | None = None,
    ) -> str:
        """A token for `subject` with `scopes`, valid for `ttl` seconds (negative: expired)."""
        if not subject.strip():
            raise ValueError("the subject must not be empty")
        issued = int(time.time() if now is None else now)
        claims: dict[str, str | int] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "scope": " ".join(scopes),
            "iat": issued,
            "exp": issued + ttl,
        }
        if ttl < 0:
            # Expired beyond any clock leeway a verifier allows (the command service's is at
            # most MAX_LEEWAY), and issued before it expired.
            expired = issued + ttl - MAX_LEEWAY
            claims |= {"exp": expired, "iat": expired - 60, "nbf": expired - 60}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


def ensure_dev_credentials(directory: Path, *, issuer: str = DEV_ISSUER) -> str:
    """The development key in `directory`, its JWKS, and a fresh `DEV_TOKEN` (also written to
    `directory/dev-token`); returns the token."""
    key = SigningKey.ensure(directory)
    token = key.mint(DEV_SUBJECT, DEV_SCOPES, ttl=DEV_TOKEN_TTL, issuer=issuer)
    _write_private(directory / TOKEN_FILE, token.encode() + b"\n")
    return token


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members of the key, in lexical order, no spaces."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(required, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to a file only its owner may read, replacing it whole."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    partial.replace(path)


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
