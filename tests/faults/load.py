"""Steady mixed command load through the gateway, with the logs the invariant checker needs."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadLog:
    """What the clients sent, what was acknowledged, and what reads returned."""

    sent: int = 0
    acknowledged: int = 0
    errors: int = 0  # 5xx, timeouts, refused connections: outcomes unknown to the client
    rejected: int = 0  # 4xx: refused by the domain (e.g. 409 insufficient stock)
    unauthorized: int = 0  # 401/403: the clients' tokens were refused (a broken test)
    acked_versions: dict[str, int] = field(default_factory=dict)  # product -> highest acked
    acked_review_versions: dict[str, int] = field(default_factory=dict)  # review -> highest
    monotonic_violations: list[str] = field(default_factory=list)


class LoadClient:
    """One client: its own products, a mix of commands, and reads that must never go back."""

    def __init__(
        self,
        gateway: str,
        log: LoadLog,
        seed: int,
        category_prefix: str,
        bearer: Callable[[str], dict[str, str]],
    ) -> None:
        self._gateway = gateway
        self._log = log
        self._random = random.Random(seed)
        self._products: list[str] = []
        self._reviews: list[str] = []
        # A few authors per client, so some reviews meet the one-per-author rule (409).
        # Each author is the subject of a token of their own (the author is the token's sub).
        authors = [f"{category_prefix}-author-{seed}-{i}" for i in range(4)]
        self._author_tokens = [bearer(author) for author in authors]
        self._token = bearer(f"{category_prefix}-client-{seed}")
        self._seen: dict[str, int] = {}
        self._categories = [f"{category_prefix}-{i}" for i in range(3)]

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        interval = 1.0 / rate
        async with httpx.AsyncClient(
            base_url=self._gateway, timeout=5, headers=self._token
        ) as client:
            next_at = time.monotonic()
            while not stop.is_set():
                await self._one(client)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _one(self, client: httpx.AsyncClient) -> None:
        r = self._random
        if not self._products or r.random() < 0.2:
            await self._command(
                client,
                "POST",
                "/api/v1/products",
                {
                    "name": f"item-{uuid.uuid4().hex[:6]}",
                    "category": r.choice(self._categories),
                    "price": f"{r.randint(1, 9999)}.{r.randint(0, 99):02d}",
                    "stock": r.randint(0, 20),
                },
            )
            return
        pid = r.choice(self._products)
        kind = r.random()
        if kind < 0.3:
            await self._command(
                client,
                "POST",
                f"/api/v1/products/{pid}/stock-adjustments",
                {"quantity_change": r.choice([-3, -1, 1, 2, 5])},
            )
        elif kind < 0.5:
            await self._command(
                client,
                "PUT",
                f"/api/v1/products/{pid}/price",
                {"price": f"{r.randint(1, 9999)}.{r.randint(0, 99):02d}"},
            )
        elif kind < 0.6:
            await self._command(
                client,
                "PATCH",
                f"/api/v1/products/{pid}",
                {"category": r.choice(self._categories), "description": uuid.uuid4().hex},
            )
        elif kind < 0.63:
            await self._command(client, "DELETE", f"/api/v1/products/{pid}", None)
        elif kind < 0.73:
            await self._command(
                client,
                "POST",
                f"/api/v1/products/{pid}/reviews",
                {"rating": r.randint(1, 5), "title": f"review {uuid.uuid4().hex[:6]}"},
                headers=r.choice(self._author_tokens),
            )
        elif kind < 0.76 and self._reviews:
            await self._command(
                client, "DELETE", f"/api/v1/reviews/{r.choice(self._reviews)}", None
            )
        else:
            await self._read(client, pid)

    async def _command(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: object,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._log.sent += 1
        try:
            response = await client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError:
            self._log.errors += 1
            return
        if response.status_code >= 500:
            self._log.errors += 1
        elif response.status_code in (401, 403):
            self._log.unauthorized += 1
        elif response.status_code >= 400:
            self._log.rejected += 1
        else:
            self._log.acknowledged += 1
            data = response.json()
            aggregate_id, version = str(data["id"]), int(data["version"])
            if "/reviews" in path:
                if method == "POST":
                    self._reviews.append(aggregate_id)
                acked = self._log.acked_review_versions
            else:
                if method == "POST" and path == "/api/v1/products":
                    self._products.append(aggregate_id)
                acked = self._log.acked_versions
            acked[aggregate_id] = max(acked.get(aggregate_id, 0), version)

    async def _read(self, client: httpx.AsyncClient, pid: str) -> None:
        try:
            response = await client.get(f"/api/v1/products/{pid}")
        except httpx.HTTPError:
            return
        if response.status_code != 200:
            return
        version = int(response.json()["version"])
        if version < self._seen.get(pid, 0):
            self._log.monotonic_violations.append(f"{pid}: read {version} after {self._seen[pid]}")
        self._seen[pid] = max(version, self._seen.get(pid, 0))


async def run_load(
    gateway: str,
    stop: asyncio.Event,
    *,
    clients: int,
    rate: float,
    seed: int,
    prefix: str,
    bearer: Callable[[str], dict[str, str]],
) -> LoadLog:
    """Run `clients` clients at `rate` operations per second each until `stop` is set; each
    authenticates with tokens `bearer` mints for its subjects."""
    log = LoadLog()
    workers = [LoadClient(gateway, log, seed + i, prefix, bearer) for i in range(clients)]
    await asyncio.gather(*(w.run(stop, rate) for w in workers))
    return log
