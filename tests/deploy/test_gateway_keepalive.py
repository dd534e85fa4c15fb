"""The gateway closes idle upstream connections before the services do, in every deployment
whose nginx configuration the repository holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service_runtime.serving import KEEP_ALIVE_SECONDS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [
    REPO / "deploy" / "local" / "nginx" / "nginx.conf.tmpl",
    REPO / "deploy" / "compose" / "nginx.conf",
]
UPSTREAM = re.compile(r"upstream\s+(\w+)\s*\{(.*?)\}", re.DOTALL)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.parent.name)
def test_every_upstream_closes_idle_connections_before_the_service(config: Path) -> None:
    upstreams = UPSTREAM.findall(config.read_text())
    assert {name for name, _ in upstreams} >= {"command_service", "query_service"}
    for name, body in upstreams:
        if "keepalive " not in body:
            continue  # no idle connections kept: nothing to race
        timeout = re.search(r"keepalive_timeout\s+(\d+)s;", body)
        assert timeout, f"{name}: nginx's default (60 s) is not stated"
        assert int(timeout.group(1)) < KEEP_ALIVE_SECONDS, name
