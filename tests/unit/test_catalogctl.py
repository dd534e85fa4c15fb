"""catalogctl's own logic, without servers: quantiles from histogram buckets, tokens, errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jwt
import pytest

from catalogctl.status import histogram_quantile
from service_runtime.tokens import SigningKey
from tests.fixtures.infra import REPO

CATALOGCTL = REPO / ".venv" / "bin" / "catalogctl"
INF = float("inf")


def test_quantiles_interpolate_inside_a_bucket() -> None:
    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (INF, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.055)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.982)


def test_quantiles_of_nothing_and_beyond_the_last_bound() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (INF, 10.0)]) == 1.0


def catalogctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "STACK_ENV": "/nonexistent"}
    return subprocess.run(
        [str(CATALOGCTL), *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_token_mints_with_the_stack_key(tmp_path: Path) -> None:
    key = SigningKey.ensure(tmp_path)
    (tmp_path / "stack.env").write_text(f"SIGNING_KEY_FILE={tmp_path / 'signing-key.pem'}\n")
    done = catalogctl(
        {"STACK_ENV": str(tmp_path / "stack.env")},
        *("token", "--sub", "ops", "--scope", "catalog:write", "--ttl", "60"),
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == key.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == (
        "ops",
        "catalog:write",
        60,
    )


def test_a_missing_key_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    done = catalogctl({"SIGNING_KEY_FILE": str(tmp_path / "none.pem")}, "token")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("catalogctl: cannot read a signing key from ")
    assert "Traceback" not in done.stderr


def test_rebuild_of_an_unknown_or_unsafe_read_model_is_one_line_and_exit_status_2() -> None:
    unknown = catalogctl({}, "rebuild", "products")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "catalogctl: no read model 'products': give one of reviews, product_list,"
        " product_detail, categories (or none for all)"
    ]
    refused = catalogctl({}, "rebuild", "reviews")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("catalogctl: reviews cannot be rebuilt alone: ")
    missing = catalogctl({}, "rebuild", "product_list")
    assert missing.returncode == 2
    [line] = missing.stderr.strip().splitlines()
    assert line.startswith("catalogctl: KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL not set")
