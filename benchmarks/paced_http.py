"""Commands at a constant arrival rate through the gateway, on a lean asyncio HTTP/1.1 client.

Open loop: each command starts at its scheduled time whatever earlier ones are doing, so a
slow pipeline cannot quietly lower the load it is measured under (coordinated omission).

    e2e:    creates; every Nth (--watch-every) is followed by a GET of the product with
            ?min_version=1 (the query service answers once its read model has that version);
            prints every watched command's response -> readable (samples_ms, for the harness
            to pool over repetitions), their p50/p99 and the failures. A watched command that
            is not readable within the window (--window) counts at the window's length, as
            does one that failed; it is never dropped. Watching a sample, not every command,
            keeps the instrument's own reads (each waiting reader polls the store) from loading
            the pipeline it measures.
    writes: half creates, half stock adjustments of given products, until killed or done;
            the steady write load of the single-model comparison.
    page-writes: a third each of creates, stock adjustments and reviews of given products;
            the steady write load of the product page comparison.

Commands carry bearer tokens minted with the stack's development key (--signing-key): one
subject for products, a fresh one per review (one published review per author and product).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import uvloop

from benchmarks.common import open_loop, percentile
from benchmarks.samples import within_window
from service_runtime.tokens import DEV_SCOPES, SigningKey


def bearer(key: SigningKey, subject: str) -> str:
    """The Authorization header line of a token of `subject`."""
    return f"Authorization: Bearer {key.mint(subject, DEV_SCOPES, ttl=24 * 3600)}\r\n"


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for our JSON API."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        head += headers
        if body:
            head += "Content-Type: application/json\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        status_line = await self._reader.readline()
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        payload = await self._reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), payload


class HttpPool:
    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        self._size = size

    async def open(self) -> None:
        for _ in range(self._size):
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._idle.put_nowait(HttpConnection(reader, writer))

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, body, headers)
        finally:
            self._idle.put_nowait(conn)


def create_body(number: int, categories: int) -> bytes:
    return orjson.dumps(
        {
            "name": f"paced {number}",
            "category": f"bench-c{number % categories:02d}",
            "price": f"{1 + number % 500}.99",
            "stock": 5,
        }
    )


# How long a watched command may take to become readable; one that takes longer counts at this.
WINDOW_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Fate:
    """What became of one command of the e2e run."""

    failed: bool  # answered other than 201, or (watched) its read answered an error
    watched: bool
    readable_after: float | None = None  # seconds from the response; None: never seen readable


def summarize(fates: Sequence[Fate], window: float) -> dict[str, object]:
    """The run's figures: every watched command is a sample, at the window's length when it
    failed or was not readable within the window; failures count both kinds."""
    watched = [fate for fate in fates if fate.watched]
    delays = [None if fate.failed else fate.readable_after for fate in watched]
    samples, missed = within_window(delays, window)
    late = missed - sum(1 for fate in watched if fate.failed)
    return {
        "commands": len(fates),
        "watched": len(watched),
        "failures": sum(1 for fate in fates if fate.failed) + late,
        "late": late,
        "window_ms": window * 1000,
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "samples_ms": [round(sample * 1000, 3) for sample in samples],
    }


async def e2e(
    base: str,
    key: SigningKey,
    rate: float,
    seconds: float,
    categories: int,
    watch_every: int = 1,
    window: float = WINDOW_SECONDS,
) -> dict[str, object]:
    # Enough connections that waiting readers never queue behind each other in this client.
    pool = HttpPool(base, 256)
    await pool.open()
    auth = bearer(key, "bench")

    async def one(number: int) -> Fate:
        status, body = await pool.request(
            "POST", "/api/v1/products", create_body(number, categories), auth
        )
        answered = time.perf_counter()
        watched = number % watch_every == 0
        if status != 201:
            return Fate(failed=True, watched=watched)
        if not watched:
            return Fate(failed=False, watched=False)
        product = orjson.loads(body)
        path = f"/api/v1/products/{product['id']}?min_version={product['version']}"
        # The query service waits up to 3 s, then answers 503: ask again while the window lasts.
        while time.perf_counter() - answered < window:
            status = (await pool.request("GET", path))[0]
            if status == 200:
                return Fate(
                    failed=False, watched=True, readable_after=time.perf_counter() - answered
                )
            if status != 503:
                return Fate(failed=True, watched=True)
        return Fate(failed=False, watched=True)

    fates = await open_loop(rate, seconds, one)
    if not any(fate.watched for fate in fates):
        raise RuntimeError("no command was watched")
    return summarize(fates, window)


async def writes(
    base: str, key: SigningKey, rate: float, seconds: float, ids: list[str], categories: int
) -> dict[str, object]:
    pool = HttpPool(base, 32)
    await pool.open()
    auth = bearer(key, "bench")

    async def one(number: int) -> int:
        if number % 2:
            path = f"/api/v1/products/{random.choice(ids)}/stock-adjustments"
            status, _ = await pool.request("POST", path, b'{"quantity_change":1}', auth)
        else:
            body = create_body(number, categories)
            status, _ = await pool.request("POST", "/api/v1/products", body, auth)
        return status

    statuses = await open_loop(rate, seconds, one)
    return {"sent": len(statuses), "failed": sum(1 for s in statuses if s not in (200, 201))}


async def page_writes(
    base: str, key: SigningKey, rate: float, seconds: float, ids: list[str], categories: int
) -> dict[str, object]:
    pool = HttpPool(base, 32)
    await pool.open()
    auth = bearer(key, "bench")
    # A fresh author per review: one published review per author and product, and a rerun
    # of the stage writes to the same products.
    run = f"{random.getrandbits(32):08x}"

    async def one(number: int) -> int:
        product = random.choice(ids)
        if number % 3 == 1:
            path = f"/api/v1/products/{product}/stock-adjustments"
            status, _ = await pool.request("POST", path, b'{"quantity_change":1}', auth)
        elif number % 3 == 2:
            body = orjson.dumps({"rating": 1 + number % 5, "title": f"bench review {number}"})
            author = bearer(key, f"bench-{run}-{number}")
            path = f"/api/v1/products/{product}/reviews"
            status, _ = await pool.request("POST", path, body, author)
        else:
            status, _ = await pool.request(
                "POST", "/api/v1/products", create_body(number, categories), auth
            )
        return status

    statuses = await open_loop(rate, seconds, one)
    return {"sent": len(statuses), "failed": sum(1 for s in statuses if s not in (200, 201))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("e2e", "writes", "page-writes"))
    parser.add_argument("--base", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ids", default="")
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--watch-every", type=int, default=1, help="e2e: watch every Nth command")
    parser.add_argument(
        "--window", type=float, default=WINDOW_SECONDS, help="e2e: seconds to become readable"
    )
    parser.add_argument("--signing-key", required=True, help="the stack's SIGNING_KEY_FILE")
    args = parser.parse_args()
    key = SigningKey.load(Path(args.signing_key))
    if args.mode == "e2e":
        run = e2e(
            args.base, key, args.rate, args.seconds,
            args.categories, args.watch_every, args.window,
        )  # fmt: skip
        result = uvloop.run(run)
    else:
        with open(args.ids) as source:
            ids = source.read().split()
        load = writes if args.mode == "writes" else page_writes
        result = uvloop.run(load(args.base, key, args.rate, args.seconds, ids, args.categories))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
