"""What the gateway itself adds: the command rate limit, the body cap, security headers, docs."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import PROBLEM
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e

# The limit is per client address. The burst comes from another loopback address, so the rest
# of the suite (from 127.0.0.1) keeps its whole budget: the default (200/s, burst 400) is meant
# never to limit it.
BURST_SOURCE = "127.0.0.2"
CONNECTIONS = 40
# Invalid bodies (422 from the service, no write) exhaust the budget, then keep taking what
# comes back of it.
DRAIN_PER_CONNECTION = 40
JUNK_BEFORE_CREATE = 10
CREATES_PER_CONNECTION = 5

Response = tuple[int, dict[str, str], bytes]


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def pipelined(host: str, port: int, requests: list[bytes]) -> list[Response]:
    """Send every request at once on one connection from BURST_SOURCE; their responses.

    Pipelining makes the burst as fast as nginx, not as fast as a Python client on a loaded
    machine: a refused request costs nginx microseconds, so the next one arrives at once.
    """
    sock = socket.create_connection((host, port), timeout=30, source_address=(BURST_SOURCE, 0))
    with sock, sock.makefile("rb") as reader:
        sock.sendall(b"".join(requests))
        responses = []
        for _ in requests:
            status = int(reader.readline().split()[1])
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, value = line.decode().split(":", 1)
                headers[name.strip().lower()] = value.strip()
            assert "chunked" not in headers.get("transfer-encoding", ""), headers
            responses.append((status, headers, reader.read(int(headers["content-length"]))))
        return responses


def loopback_gateway(infra: Infra) -> tuple[str, int]:
    url = urlsplit(infra.gateway_url)
    host, port = url.hostname or "", url.port or 80
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(host)
    except ValueError:
        pytest.skip("the burst needs a second client address: a gateway on this machine's loopback")
    return host, port


async def names_in_category(database_url: str, category: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT name FROM products WHERE category = $1", category)
    finally:
        await conn.close()
    return {row["name"] for row in rows}


def test_a_burst_of_commands_gets_429_and_nothing_else_is_affected(
    infra: Infra, client: httpx.Client
) -> None:
    host, port = loopback_gateway(infra)
    auth = {k: v for k, v in client.headers.items() if k.lower() == "authorization"}
    json_headers = {**auth, "Content-Type": "application/json"}
    category = f"burst-{uuid.uuid4().hex[:12]}"

    junk = request("POST", "/api/v1/products", json_headers, b"{}")
    query = request("GET", "/api/v1/categories", {})

    def create(name: str) -> bytes:
        body = {"name": name, "category": category, "price": "1.00", "stock": 1}
        return request("POST", "/api/v1/products", json_headers, json.dumps(body).encode())

    def connection(index: int) -> list[tuple[str, bytes]]:
        """What one connection pipelines: (the create's name, or "junk" or "query"; request)."""
        # A query in the middle of the burst and one at its end, from the very address limited.
        plan = [("junk", junk)] * DRAIN_PER_CONNECTION + [("query", query)]
        for n in range(CREATES_PER_CONNECTION):
            # Junk just ahead of each create takes any budget that came back in the meantime:
            # a refused request costs nginx nothing, so the create follows within microseconds.
            plan += [("junk", junk)] * JUNK_BEFORE_CREATE + [
                (f"{index}-{n}", create(f"{index}-{n}"))
            ]
        return [*plan, ("query", query)]

    plans = [connection(i) for i in range(CONNECTIONS)]
    with ThreadPoolExecutor(CONNECTIONS + 1) as pool:
        bursts = [pool.submit(pipelined, host, port, [data for _, data in plan]) for plan in plans]
        # Another client, at the same time, keeps its own budget.
        others = [
            pool.submit(
                client.post,
                "/api/v1/products",
                json={"name": "other client", "category": category, "price": "1", "stock": 1},
            )
            for _ in range(3)
        ]
        results = [burst.result() for burst in bursts]
        assert [other.result().status_code for other in others] == [201] * 3

    statuses: Counter[int] = Counter()
    accepted: set[str] = set()
    refused: set[str] = set()
    for plan, responses in zip(plans, results, strict=True):
        for (what, _), (status, headers, body) in zip(plan, responses, strict=True):
            statuses[status] += 1
            if what == "query":
                assert status == 200, "queries are never limited"
                assert "retry-after" not in headers
                continue
            assert status in (429, 201 if what != "junk" else 422), (what, status)
            if status == 429:
                assert headers["content-type"] == PROBLEM
                assert headers["retry-after"] == "1"
                assert json.loads(body) == {
                    "type": "https://catalog-cqrs.dev/problems/rate-limited",
                    "title": "Too Many Requests",
                    "status": 429,
                    "detail": "too many commands from this client; retry later",
                }
            if what != "junk":
                (accepted if status == 201 else refused).add(what)

    assert refused, f"creates arriving during the burst are refused: {statuses}"
    written = asyncio.run(names_in_category(infra.database_url, category))
    assert written == accepted | {"other client"}, "a refused command writes nothing"


def test_every_answer_carries_the_security_headers(client: httpx.Client) -> None:
    answers = [
        client.get("/api/v1/categories"),
        client.post("/api/v1/products", json={}),
        client.get("/nowhere"),
        client.get("/healthz"),
    ]
    # The empty create is refused by the command service (422, or 401 without a token).
    assert [r.status_code for r in answers][::2] == [200, 404]
    assert answers[1].status_code in (401, 422)
    assert answers[3].status_code == 200
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        # Plain HTTP: HSTS would be ignored by browsers, so the gateway does not send it.
        assert "strict-transport-security" not in response.headers
        assert "retry-after" not in response.headers


def test_bodies_over_64_kib_are_refused_by_the_gateway(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/products",
        content=b"x" * (64 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "https://catalog-cqrs.dev/problems/body-too-large"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_docs_of_both_services_are_under_api_v1_docs(client: httpx.Client) -> None:
    index = client.get("/api/v1/docs")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    for service, title in (("command", "Catalog command API"), ("query", "Catalog query API")):
        assert f'href="/api/v1/docs/{service}"' in index.text
        document = client.get(f"/api/v1/docs/{service}/openapi.json")
        assert document.status_code == 200, (service, document.text)
        assert document.json()["info"]["title"] == title
        assert document.json()["paths"]
        page = client.get(f"/api/v1/docs/{service}")
        assert page.status_code == 200, (service, page.text)
        assert page.headers["content-type"].startswith("text/html")
        # The page loads the document the gateway serves, not the service's own path.
        assert f'"url": "/api/v1/docs/{service}/openapi.json"' in page.text
        # ...and the policy lets it load swagger-ui and run its inline start-up script.
        policy = page.headers["content-security-policy"]
        assert "script-src 'unsafe-inline' https://cdn.jsdelivr.net" in policy
        assert "connect-src 'self'" in policy
        assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist" in page.text
    paths = client.get("/api/v1/docs/command/openapi.json").json()["paths"]
    assert "/api/v1/products" in paths
