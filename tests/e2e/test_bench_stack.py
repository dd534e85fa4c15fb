"""`make bench` starts a stack of its own from nothing, on ports of its own: that start path,
taken here as the harness takes it (a trial once saw it fail from a fresh clone, the read store
not answering on the offset port, and pass when run again)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pymongo import MongoClient

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# Ports no stack of ours may take: the well-known ones of the servers it runs.
WELL_KNOWN = {5432, 9092, 9093, 27017, 4317, 4318, 16686, 9090, 8080, 8000}


def harness(env: dict[str, str], code: str) -> None:
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=900)


def test_the_benchmark_starts_its_own_stack_and_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_OUT_DIR": str(tmp_path / "bench")}
    for variable in ("STACK_DIR", "STACK_PORT_OFFSET", "TEST_INFRA", "STACK_ENV"):
        env.pop(variable, None)
    stack = tmp_path / "bench" / "stack"
    try:
        harness(env, "from benchmarks.common import fresh_stack; fresh_stack()")
        pairs = (line.split("=", 1) for line in (stack / "stack.env").read_text().splitlines())
        found = {key: value for key, value in pairs}
        ports = {
            urlsplit(url if "://" in url else f"tcp://{url}").port
            for key, url in found.items()
            if key.endswith(("_URL", "_SERVERS")) and key != "SIGNING_KEY_FILE"
        }
        shown = sorted(port for port in ports if port)
        assert len(shown) == len(ports) > 5, shown
        assert not ports & WELL_KNOWN, shown
        assert min(shown) > 20000, shown
        mongo: MongoClient[dict[str, object]]
        with MongoClient(found["MONGODB_URL"], serverSelectionTimeoutMS=5000) as mongo:
            assert mongo.admin.command("ping")["ok"] == 1
        assert httpx.get(f"{found['GATEWAY_URL']}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{found['QUERY_URL']}/readyz", timeout=10).status_code == 200
        supervisord = int((stack / "supervisord.pid").read_text())
    finally:
        harness(env, "from benchmarks.common import stop_stack; stop_stack()")
    with pytest.raises(ProcessLookupError):
        os.kill(supervisord, 0)
