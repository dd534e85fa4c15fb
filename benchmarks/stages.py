"""The stages, each measured side by side with its baseline, back to back in every repetition.

Each stage measures on a catalog of its own: a fixed number of products it seeds (reported as
its `products` figure), which `clear_catalog` removes with bulk deletes once the stage ends, so
no stage measures on what another left. Throughputs are medians of the repetitions; latencies
that the harness samples itself (end to end, commit to topic) are pooled over every
repetition's samples (benchmarks.samples). Each stage reports its failures beside its figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from pymongo import AsyncMongoClient

from benchmarks import kafka, peers
from benchmarks.backlog import insert_outbox, mixed_events
from benchmarks.common import (
    CPU,
    OUT_DIR,
    PUBLISHING,
    Service,
    Sizes,
    free_port,
    leading_relay,
    median,
    percentile,
    projector,
    python_module,
    relay,
    run_json,
    say,
    stack_status,
)
from benchmarks.page_data import PRODUCT_COLUMNS
from benchmarks.profiles import CpuByPart, Sampler, supervised_pid
from benchmarks.samples import chunks, paired_ratio, pooled, within_window
from benchmarks.wrk import Request, WrkResult, run_wrk
from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    RATINGS_COLLECTION,
    REVIEWS_COLLECTION,
)
from catalog_contracts.read_models import generation_from_pointer as pointer_to_generation
from catalog_read_models import product_detail, product_list
from catalogctl.status import commit_to_view_buckets, histogram_quantile
from projector.consumer import dead_letter_topic
from service_runtime.tokens import JWKS_FILE

T = TypeVar("T")


@dataclass
class Context:
    """The stack's addresses, the sizes, and what earlier stages found."""

    env: dict[str, str]
    sizes: Sizes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    notes: dict[str, list[str]] = field(default_factory=dict)
    command_rps: float = 0.0
    backlog_topic: str = ""
    backlog_products: int = 0  # the products the backlog's events change
    projector_metrics_url: str = ""  # the harness's own projector's, once started

    @property
    def dsn(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def mongo(self) -> str:
        return self.env["MONGODB_URL"]

    @property
    def database(self) -> str:
        return self.env.get("MONGODB_DATABASE", "catalog")

    @property
    def auth(self) -> dict[str, str]:
        """DEV_TOKEN's Authorization header: commands need a bearer token."""
        return {"Authorization": f"Bearer {self.env['DEV_TOKEN']}"}

    live: dict[str, Service] = field(default_factory=dict)

    def note(self, stage: str, line: str) -> None:
        say(f"{stage}: {line}")
        self.notes.setdefault(stage, []).append(line)


def live_start(ctx: Context, *names: str) -> None:
    """Our own relay/projector with the stack's default settings, in place of the supervised.

    The harness runs them itself (metrics ports off) rather than stopping and starting the
    supervised ones: a stopped part's metrics port can be taken by another stack on the machine.
    """
    for name in names:
        if name not in ctx.live or not ctx.live[name].alive():
            if name == "relay":
                ctx.live[name] = leading_relay("live-relay")
            else:
                port = free_port()  # its metrics: the e2e stage reads its commit-to-view
                ctx.live[name] = projector("live-projector", PROJECTOR_METRICS_PORT=str(port))
                ctx.projector_metrics_url = f"http://127.0.0.1:{port}/metrics"


def live_stop(ctx: Context, *names: str) -> None:
    for name in names:
        if name in ctx.live:
            ctx.live.pop(name).stop()


def peer(ctx: Context, stage: str, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """A peer's figures, or none: a peer that cannot be fetched or run leaves ours standing."""
    try:
        return fn()
    except Exception as exc:
        traceback.print_exc()
        ctx.note(stage, f"the peer failed, its figures are null: {exc}"[:600])
        return {}


def measured(fn: Callable[[], T]) -> T:
    """Count the CPU of a baseline's window like wrk's."""
    CPU.start()
    try:
        return fn()
    finally:
        CPU.stop()


def sql(dsn: str, query: str, *args: Any) -> Any:
    async def go() -> Any:
        conn: asyncpg.Connection = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(0.5)
    return time.monotonic() - started


def profile_http(
    ctx: Context, stage: str, parts: tuple[str, ...], requests: list[Request], seconds: float
) -> None:
    """Sample the supervised `parts` with py-spy through one more (unmeasured) wrk window."""
    status = stack_status()
    samplers = [Sampler(f"{stage}-{part}", supervised_pid(status, part)) for part in parts]
    try:
        gateway = ctx.env["GATEWAY_URL"]
        run_wrk(
            gateway,
            requests,
            seconds=seconds,
            connections=ctx.sizes.concurrency,
            headers=ctx.auth,
        )
    finally:
        for sampler in samplers:
            ctx.note(stage, sampler.stop().summary())


# --------------------------------------------------------------------------- each stage's catalog


def category(n: int, sizes: Sizes) -> str:
    """The category of the bench's product `n`: every product it writes is in one of these."""
    return f"bench-c{n % sizes.categories:02d}"


def bench_categories(sizes: Sizes) -> list[str]:
    return [category(n, sizes) for n in range(sizes.categories)]


SEEDED = "seeded "
SEED_BATCH = 2_000
# Ids per bulk delete: a few hundred kilobytes of `$in`, far under a message's 16 MB.
DELETE_CHUNK = 10_000
# The read models with one document per product, which the single model's table stands for.
PRODUCT_DOCUMENTS = (product_list.READ_MODEL, product_detail.READ_MODEL)


def count_products(ctx: Context) -> int:
    """The write model's products: the catalog a stage measures on."""
    return int(sql(ctx.dsn, "SELECT count(*) FROM products"))


def seed_models(ctx: Context, count: int, stage: str) -> list[str]:
    """The same `count` products in PostgreSQL and in the live read model, written directly;
    returns their ids.

    Straight into both stores (COPY; insert_many of the projector's own documents), not
    through the pipeline, whose speed the relay and projector stages measure; then the
    category figures are recomputed the projector's way.
    """
    from decimal import Decimal

    from catalog_contracts.events import ProductState
    from catalog_read_models.projection import Projection
    from catalog_read_models.ratings import NO_FIGURES

    s = ctx.sizes
    rng = random.Random(11)
    ids: list[str] = []

    async def go() -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ctx.dsn)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.mongo, tz_aware=True)
        try:
            db = client[ctx.database]
            generation = pointer_to_generation(
                await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
            )
            now = datetime.now(UTC)
            for start in range(0, count, SEED_BATCH):
                states = [
                    ProductState(
                        id=uuid.uuid4(),
                        name=f"{SEEDED}{n}",
                        description=None,
                        category=category(n, s),
                        price=Decimal(rng.randrange(100, 100_000)) / 100,
                        stock=rng.choice((0, 1, 5, 20)),
                        status="active",
                        created_at=now,
                        updated_at=now,
                        version=1,
                    )
                    for n in range(start, min(count, start + SEED_BATCH))
                ]
                await conn.copy_records_to_table(
                    "products",
                    records=[tuple(getattr(p, c) for c in PRODUCT_COLUMNS) for p in states],
                    columns=PRODUCT_COLUMNS,
                )
                for model in PRODUCT_DOCUMENTS:
                    await db[generation.collection(model.name)].insert_many(
                        [model.document(p, NO_FIGURES, 0) for p in states], ordered=False
                    )
                ids.extend(str(p.id) for p in states)
                if start % 20_000 == 0:
                    say(f"{stage}: seeded {len(ids):,} of {count:,} products")
            projection = await Projection.open(db)
            await projection.recompute_categories(bench_categories(s))
        finally:
            await conn.close()
            await client.close()

    asyncio.run(go())
    return ids


def clear_catalog(ctx: Context, stage: str) -> int:
    """Remove every product of the bench's categories from both models, so that the next stage
    starts from none; returns how many.

    The live pipeline catches up first: an event still on its way would bring a removed
    document back. Outbox rows that no relay was running to publish (the command stage's) are
    deleted instead of published. The relay and projector run only meanwhile unless they ran
    before.
    """
    running = {name for name, service in ctx.live.items() if service.alive()}
    if "relay" not in running:
        dropped = int(
            sql(
                ctx.dsn,
                "WITH gone AS (DELETE FROM outbox WHERE published_at IS NULL RETURNING 1)"
                " SELECT count(*) FROM gone",
            )
        )
        if dropped:
            ctx.note(stage, f"deleted its {dropped:,} outbox rows, which no relay published")
    live_start(ctx, "relay", "projector")
    try:
        caught_up(ctx, 300, stage)
        removed = asyncio.run(remove_products(ctx))
    finally:
        live_stop(ctx, *({"relay", "projector"} - running))
    ctx.note(stage, f"removed its {removed:,} products from both models (bulk deletes)")
    return removed


async def remove_products(ctx: Context) -> int:
    """Bulk deletes of the bench's products: their rows and reviews (`= ANY` of their ids), then
    their documents, tallies and review documents (`delete_many` of `$in` chunks). Documents
    without a row (an interrupted run's) are found by their category."""
    from catalog_read_models.projection import Projection

    categories = bench_categories(ctx.sizes)
    conn: asyncpg.Connection = await asyncpg.connect(ctx.dsn)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.mongo, tz_aware=True)
    try:
        rows = await conn.fetch(
            "SELECT id FROM products WHERE category = ANY($1::text[])", categories
        )
        keys = [row["id"] for row in rows]
        async with conn.transaction():
            await conn.execute("DELETE FROM reviews WHERE product_id = ANY($1::uuid[])", keys)
            await conn.execute("DELETE FROM products WHERE id = ANY($1::uuid[])", keys)
        db = client[ctx.database]
        generation = pointer_to_generation(
            await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
        )
        found = {str(key) for key in keys}
        for model in PRODUCT_DOCUMENTS:
            documents = db[generation.collection(model.name)]
            found |= {
                doc["_id"]
                async for doc in documents.find({"category": {"$in": categories}}, {"_id": 1})
            }
        ids = sorted(found)
        for part in chunks(ids, DELETE_CHUNK):
            some = {"$in": list(part)}
            for model in PRODUCT_DOCUMENTS:
                await db[generation.collection(model.name)].delete_many({"_id": some})
            await db[generation.collection(RATINGS_COLLECTION)].delete_many({"_id": some})
            await db[generation.collection(REVIEWS_COLLECTION)].delete_many({"product_id": some})
        await (await Projection.open(db)).recompute_categories(categories)
        return len(ids)
    finally:
        await conn.close()
        await client.close()


def wrk_failures(results: list[WrkResult]) -> int:
    """Every error of these windows: statuses outside 2xx/3xx, timeouts, socket errors."""
    return sum(result.errors for result in results)


# --------------------------------------------------------------------------- 1. command


def command_stage(ctx: Context) -> dict[str, float]:
    """Creates and stock adjustments (half each) through the gateway vs raw asyncpg, and vs
    the same FastAPI stack writing the same rows with no outbox (the single model's writes)."""
    s = ctx.sizes
    ids_file = OUT_DIR / "seed-ids.txt"
    seed = python_module(
        "benchmarks.raw_command", "seed", "--dsn", ctx.dsn,
        "--count", str(s.seed_products), "--categories", str(s.categories),
    )  # fmt: skip
    seeded: Any = run_json(seed, timeout=600)
    seed_ids = [str(product_id) for product_id in seeded]
    ids_file.write_text("\n".join(seed_ids))
    products = count_products(ctx)
    requests = []
    for n in range(2000):
        if n % 2:
            path = f"/api/v1/products/{random.choice(seed_ids)}/stock-adjustments"
            requests.append(Request("POST", path, '{"quantity_change":1,"reason":"bench"}'))
        else:
            body = (
                f'{{"name":"bench {n}","category":"{category(n, s)}",'
                f'"price":"{1 + n % 500}.{n % 100:02d}","stock":5}}'
            )
            requests.append(Request("POST", "/api/v1/products", body))
    gateway = ctx.env["GATEWAY_URL"]
    port = free_port()
    jwks = Path(ctx.env["SIGNING_KEY_FILE"]).with_name(JWKS_FILE)  # what the services trust
    app = python_module(
        "benchmarks.single_model_writes", "--dsn", ctx.dsn, "--port", str(port),
        "--jwks", str(jwks), "--issuer", ctx.env["JWT_ISSUER"],
    )  # fmt: skip
    single = Service("single-model-writes", app, {})
    base = f"http://127.0.0.1:{port}"
    ours, raws, singles = [], [], []
    try:
        wait_for("single-model writes", lambda: _answers(base + "/readyz"), 60)
        ctx.note(
            "command",
            f"{products:,} products to start with; the single model's writes: the command "
            "service's app on an outbox that stores nothing, as many processes and pool "
            "connections as the stack's command services, measured without the gateway",
        )
        # Every command carries DEV_TOKEN: the services verify its signature on each request,
        # which raw asyncpg does not have to.
        for url in (gateway, base):  # warm-up
            run_wrk(url, requests, seconds=2, connections=s.concurrency, headers=ctx.auth)

        def window(url: str) -> WrkResult:
            return run_wrk(
                url, requests, seconds=s.seconds, connections=s.concurrency, headers=ctx.auth
            )

        for rep in range(s.reps):
            split = CpuByPart()
            ours.append(window(gateway))
            cpu_ours, split = split.stop(), CpuByPart()
            raw_cmd = python_module(
                "benchmarks.raw_command", "load", "--dsn", ctx.dsn,
                "--seconds", str(s.seconds), "--concurrency", str(s.concurrency),
                "--ids", str(ids_file), "--categories", str(s.categories),
            )  # fmt: skip
            raws.append(measured(lambda cmd=raw_cmd: run_json(cmd, timeout=s.seconds + 120)))  # type: ignore[misc]
            cpu_raw, split = split.stop(), CpuByPart()
            singles.append(window(base))
            cpu_single = split.stop()
            ctx.note(
                "command",
                f"rep {rep + 1}: gateway {ours[-1].rps:,.0f}/s (p50 {ours[-1].p50_ms:.1f} ms, "
                f"p99 {ours[-1].p99_ms:.1f} ms, {ours[-1].errors_text}); "
                f"raw asyncpg {raws[-1]['rps']:,.0f}/s; "  # type: ignore[index]
                f"single model {singles[-1].rps:,.0f}/s ({singles[-1].errors_text})",
            )
            if rep == 0:
                ctx.note("command", f"gateway window, {cpu_ours}")
                ctx.note("command", f"raw window, {cpu_raw}")
                ctx.note("command", f"single model window, {cpu_single}")
    finally:
        single.stop()
    profile_http(ctx, "command", ("command", "command-2"), requests, s.seconds)
    rps = median([o.rps for o in ours])
    raw_rps = median([float(r["rps"]) for r in raws])  # type: ignore[index]
    ctx.command_rps = rps
    return {
        "products": products,
        "rps": rps,
        "p50_ms": median([o.p50_ms for o in ours]),
        "p99_ms": median([o.p99_ms for o in ours]),
        "failures": wrk_failures(ours),
        "raw_rps": raw_rps,
        "ratio": paired_ratio([o.rps for o in ours], [float(r["rps"]) for r in raws]),  # type: ignore[index]
        "single_model_rps": median([o.rps for o in singles]),
        "single_model_ratio": paired_ratio([o.rps for o in ours], [o.rps for o in singles]),
        "single_model_failures": wrk_failures(singles),
    }


# --------------------------------------------------------------------------- 2. relay


def watch_outbox(dsn: str, first_id: int, total: int, timeout: float) -> tuple[float, int]:
    """Seconds from the first marked row to the last, and the rows marked in between."""
    query = "SELECT count(*) FROM outbox WHERE id >= $1 AND published_at IS NULL"
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        left = int(sql(dsn, query, first_id))
        now = time.perf_counter()
        if first is None and left < total:
            first = (now, left)
        if left == 0 and first is not None:
            return now - first[0], first[1]
        time.sleep(0.2)
    raise RuntimeError("the relay did not drain its backlog in time")


def relay_stage(ctx: Context) -> dict[str, float]:
    """A backlog of outbox rows through the relay vs aiokafka sending the same payloads."""
    s = ctx.sizes
    live_stop(ctx, "relay", "projector")
    rows = mixed_events(s.backlog_events, s.backlog_products, s.categories)
    ctx.backlog_products = len({row.aggregate_id for row in rows})
    ctx.note("relay", f"a backlog of {len(rows):,} events over {ctx.backlog_products:,} products")
    first_id = asyncio.run(insert_outbox(ctx.dsn, rows))
    ours, raws = [], []
    try:
        for rep in range(s.reps):
            if rep:
                sql(ctx.dsn, "UPDATE outbox SET published_at = NULL WHERE id >= $1", first_id)
            topic = f"bench.{ctx.run_id}.relay.{rep}"
            asyncio.run(kafka.create_topic(ctx.bootstrap, topic))
            service = relay(f"relay-{rep}", COMMAND_EVENTS_TOPIC=topic)
            sampler = None
            if rep == 0:  # sample the publishing, not the imports of its start
                service.wait_for_log(PUBLISHING, 90)
                sampler = Sampler("relay", service.pid)
            CPU.start()
            split = CpuByPart()
            try:
                seconds, marked = watch_outbox(ctx.dsn, first_id, len(rows), 1800)
            finally:
                cpu_ours = split.stop()
                CPU.stop()
                service.stop()
            if sampler is not None:  # only the first rep: py-spy takes some CPU of its own
                ctx.note("relay", f"relay window (sampled), {cpu_ours}")
                ctx.note("relay", sampler.stop().summary())
            ours.append(marked / seconds)
            raw_topic = f"bench.{ctx.run_id}.rawrelay.{rep}"
            asyncio.run(kafka.create_topic(ctx.bootstrap, raw_topic))
            cmd = python_module(
                "benchmarks.raw_relay", "--dsn", ctx.dsn,
                "--bootstrap", ctx.bootstrap, "--topic", raw_topic, "--first-id", str(first_id),
            )  # fmt: skip
            split = CpuByPart()
            raws.append(float(measured(lambda c=cmd: run_json(c, timeout=1800))["eps"]))  # type: ignore[misc,index]
            if rep == 0:
                ctx.note("relay", f"raw window, {split.stop()}")
            ctx.backlog_topic = topic
            ctx.note(
                "relay", f"rep {rep + 1}: relay {ours[-1]:,.0f} events/s; raw {raws[-1]:,.0f}/s"
            )
        pairs = []
        for rep in range(s.reps):  # the same backlog shared by two relays (16 shards)
            sql(ctx.dsn, "UPDATE outbox SET published_at = NULL WHERE id >= $1", first_id)
            topic = f"bench.{ctx.run_id}.relay2.{rep}"
            asyncio.run(kafka.create_topic(ctx.bootstrap, topic))
            both = [relay(f"relay-pair-{rep}-{n}", COMMAND_EVENTS_TOPIC=topic) for n in (1, 2)]
            try:
                seconds, marked = watch_outbox(ctx.dsn, first_id, len(rows), 1800)
            finally:
                for service in both:
                    service.stop()
            pairs.append(marked / seconds)
            ctx.note("relay", f"rep {rep + 1}: two relays {pairs[-1]:,.0f} events/s")
    finally:
        sql(ctx.dsn, "DELETE FROM outbox WHERE id >= $1", first_id)
    debezium = peer(ctx, "relay", lambda: debezium_backlog(ctx, rows))
    p50, p99, late = relay_latency(ctx)
    debezium |= peer(ctx, "relay", lambda: debezium_latency(ctx))
    eps, raw_eps = median(ours), median(raws)
    return {
        **debezium,
        "products": ctx.backlog_products,
        "eps": eps,
        "raw_eps": raw_eps,
        "ratio": paired_ratio(ours, raws),
        "p50_ms": p50,
        "p99_ms": p99,
        "failures": late,
        "shards": float(sql(ctx.dsn, "SELECT outbox_shards()")),
        "eps_2_relays": median(pairs),
    }


def debezium_backlog(ctx: Context, rows: list[Any]) -> dict[str, float]:
    """The relay's backlog committed while Debezium streams: events/s first to last arrival.

    Debezium reads only what is committed after it holds its slot, so the backlog is inserted
    anew (in one transaction, all there at once) for each repetition and deleted after it.
    """
    rates = []
    for rep in range(ctx.sizes.reps):
        topic = f"bench.{ctx.run_id}.debezium.{rep}"
        asyncio.run(kafka.create_topic(ctx.bootstrap, topic))
        first_id = None
        try:
            with peers.debezium(f"debezium-{rep}", topic, ctx.dsn, ctx.bootstrap):
                first_id = asyncio.run(insert_outbox(ctx.dsn, rows, one_transaction=True))
                CPU.start()
                try:
                    seconds, arrived = asyncio.run(
                        kafka.watch_topic(ctx.bootstrap, topic, len(rows), 1800)
                    )
                finally:
                    CPU.stop()
        finally:
            if first_id is not None:
                sql(ctx.dsn, "DELETE FROM outbox WHERE id >= $1", first_id)
        rates.append(arrived / seconds)
        ctx.note("relay", f"rep {rep + 1}: Debezium {rates[-1]:,.0f} events/s")
    return {"debezium_eps": median(rates)}


def debezium_latency(ctx: Context) -> dict[str, float]:
    """relay_latency's paced commits, published by Debezium instead of our relay."""
    live_stop(ctx, "relay")  # ours would publish the same rows on the same two cores
    topic = f"bench.{ctx.run_id}.debezium-latency"
    asyncio.run(kafka.create_topic(ctx.bootstrap, topic))
    try:
        with peers.debezium("debezium-latency", topic, ctx.dsn, ctx.bootstrap):
            p50, p99, late = paced_latency(ctx, topic, "Debezium")
    finally:
        live_start(ctx, "relay")  # and publishes the paced rows to the live topic
    return {"debezium_p50_ms": p50, "debezium_p99_ms": p99, "debezium_failures": late}


def relay_latency(ctx: Context) -> tuple[float, float, int]:
    """Commit (raw asyncpg, paced at half the command rate) to arrival on the live topic."""
    live_start(ctx, "relay", "projector")
    return paced_latency(ctx, ctx.env["EVENTS_TOPIC"], "relay")


# How long a committed event may take to arrive on the topic; a later or missing one counts
# at this.
ARRIVAL_WINDOW = 30.0


def paced_latency(ctx: Context, topic: str, publisher: str) -> tuple[float, float, int]:
    """p50 and p99 (ms) of commit -> arrival on `topic`, paced at half the command rate, over
    every rep's events together; and the events that did not arrive within ARRIVAL_WINDOW."""
    s = ctx.sizes
    rate = max(1.0, ctx.command_rps / 2)
    runs: list[list[float]] = []
    late = 0
    for rep in range(s.reps):

        async def measure() -> list[float | None]:
            clock = kafka.ArrivalClock(ctx.bootstrap, topic)
            await clock.start()
            try:
                # The commit times go through a file: a 200 KB line read back from a pipe once
                # arrived cut short.
                out = OUT_DIR / "relay-latency-commits.json"
                out.unlink(missing_ok=True)
                cmd = python_module(
                    "benchmarks.raw_command", "paced", "--dsn", ctx.dsn,
                    "--rate", f"{rate:.1f}", "--seconds", str(s.latency_seconds),
                    "--categories", str(s.categories), "--out", str(out),
                )  # fmt: skip
                process = await asyncio.create_subprocess_exec(*cmd)
                CPU.start()
                code = await process.wait()
                CPU.stop()
                if code != 0:
                    raise RuntimeError(f"raw_command paced exited with {code}")
                commits: dict[str, float] = json.loads(out.read_text())
                deadline = time.monotonic() + ARRIVAL_WINDOW
                while len(clock.arrivals.keys() & commits.keys()) < len(commits):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                arrivals = clock.arrivals
                return [arrivals[k] - t if k in arrivals else None for k, t in commits.items()]
            finally:
                await clock.stop()

        samples, missed = within_window(asyncio.run(measure()), ARRIVAL_WINDOW)
        runs.append([sample * 1000 for sample in samples])
        late += missed
        p50, p99 = pooled(runs[-1:])
        ctx.note(
            "relay",
            f"{publisher} latency rep {rep + 1} at {rate:.0f} commands/s: commit -> on the topic "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(samples)} events, {missed} not there "
            f"within {ARRIVAL_WINDOW:.0f} s)",
        )
    p50, p99 = pooled(runs)
    return p50, p99, late


# --------------------------------------------------------------------------- 3. projector


def projector_stage(ctx: Context) -> dict[str, float]:
    """The relay stage's topic into fresh databases: the projector vs PyMongo's raw upserts."""
    s = ctx.sizes
    if not ctx.backlog_topic:
        raise RuntimeError("the projector stage reads the relay stage's topic: run both")
    live_stop(ctx, "projector")
    topic, total = ctx.backlog_topic, s.backlog_events
    products = ctx.backlog_products or s.backlog_products
    ctx.note("projector", f"the relay stage's topic: {total:,} events over {products:,} products")
    ours, raws = [], []
    for rep in range(s.reps):
        group, database = f"bench-{ctx.run_id}-projector-{rep}", f"bench_{ctx.run_id}_p{rep}"
        service = projector(
            f"projector-{rep}",
            PROJECTOR_EVENTS_TOPIC=topic,
            PROJECTOR_GROUP_ID=group,
            PROJECTOR_MONGODB_DATABASE=database,
        )
        CPU.start()
        split = CpuByPart()
        try:
            seconds, applied = asyncio.run(kafka.watch_group(ctx.bootstrap, group, total, 3600))
        finally:
            cpu = split.stop()
            CPU.stop()
            service.stop()
            drop_database(ctx.mongo, database)
        if rep == 0:
            ctx.note("projector", f"projector window, {cpu}")
        ours.append(applied / seconds)
        cmd = python_module(
            "benchmarks.raw_projector", "--bootstrap", ctx.bootstrap,
            "--topic", topic, "--mongodb-url", ctx.mongo,
            "--database", f"bench_{ctx.run_id}_r{rep}",
        )  # fmt: skip
        raws.append(float(measured(lambda c=cmd: run_json(c, timeout=3600))["eps"]))  # type: ignore[misc,index]
        ctx.note(
            "projector", f"rep {rep + 1}: projector {ours[-1]:,.0f} events/s; raw {raws[-1]:,.0f}/s"
        )
    singles = []
    for rep in range(s.reps):
        group, database = f"bench-{ctx.run_id}-single-{rep}", f"bench_{ctx.run_id}_s{rep}"
        service = projector(
            f"projector-single-{rep}",
            PROJECTOR_EVENTS_TOPIC=topic,
            PROJECTOR_GROUP_ID=group,
            PROJECTOR_MONGODB_DATABASE=database,
            PROJECTOR_BATCH_SIZE="1",
        )
        try:
            singles.append(asyncio.run(window_rate(ctx.bootstrap, group, s.single_seconds)))
        finally:
            service.stop()
            drop_database(ctx.mongo, database)
        ctx.note("projector", f"one event at a time, rep {rep + 1}: {singles[-1]:,.0f} events/s")
    sink = peer(ctx, "projector", lambda: sink_rate(ctx))
    live_start(ctx, "projector")
    eps, raw_eps = median(ours), median(raws)
    return {
        **sink,
        "products": products,
        "eps": eps,
        "raw_eps": raw_eps,
        "ratio": paired_ratio(ours, raws),
        "single_eps": median(singles),
        "failures": dead_letters(ctx, topic),
    }


def dead_letters(ctx: Context, topic: str) -> int:
    """The events our projectors of this stage dead-lettered (every run reads `topic`)."""
    try:
        return asyncio.run(kafka.topic_size(ctx.bootstrap, dead_letter_topic(topic)))
    except Exception:  # no dead-letter topic: nothing was dead-lettered
        return 0


def sink_rate(ctx: Context) -> dict[str, float]:
    """The same topic through MongoDB's Kafka sink connector: one replaced document per event."""
    topic, total = ctx.backlog_topic, ctx.sizes.backlog_events
    rates = []
    for rep in range(ctx.sizes.reps):
        name, database = f"bench-{ctx.run_id}-sink-{rep}", f"bench_{ctx.run_id}_k{rep}"
        try:
            with peers.mongo_sink(name, topic, ctx.bootstrap, ctx.mongo, database) as group:
                CPU.start()
                try:
                    seconds, applied = asyncio.run(
                        kafka.watch_group(ctx.bootstrap, group, total, 3600)
                    )
                finally:
                    CPU.stop()
        finally:
            drop_database(ctx.mongo, database)
        rates.append(applied / seconds)
        ctx.note("projector", f"rep {rep + 1}: MongoDB sink connector {rates[-1]:,.0f} events/s")
    return {"sink_eps": median(rates)}


async def window_rate(bootstrap: str, group: str, seconds: float) -> float:
    """Events a group commits per second over `seconds` after its first commit."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 120
        first = 0
        while first == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"group {group} committed nothing")
            await asyncio.sleep(0.2)
            first = await kafka.group_progress(admin, group)
        CPU.start()
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        last = await kafka.group_progress(admin, group)
        CPU.stop()
        return (last - first) / (time.perf_counter() - started)
    finally:
        await admin.close()


def drop_database(url: str, database: str) -> None:
    async def go() -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        try:
            await client.drop_database(database)
        finally:
            await client.close()

    asyncio.run(go())


# --------------------------------------------------------------------------- 4. query


def list_path(c: str) -> str:
    return f"/api/v1/products?category={c}&in_stock=true&sort=price&limit=20"


def sample_ids(ctx: Context, count: int) -> list[str]:
    async def go() -> list[str]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.mongo)
        try:
            db = client[ctx.database]
            generation = pointer_to_generation(
                await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
            )
            listed = db[generation.collection(PRODUCT_LIST_COLLECTION)]
            cursor = listed.find({}, {"_id": 1}).limit(count)
            return [str(doc["_id"]) async for doc in cursor]
        finally:
            await client.close()

    return asyncio.run(go())


def query_stage(ctx: Context) -> dict[str, float]:
    """Detail and list reads (alternating) through the gateway vs raw AsyncMongoClient finds,
    on a catalog of Sizes.catalog_products."""
    live_start(ctx, "relay", "projector")
    s = ctx.sizes
    seed_models(ctx, s.catalog_products, "query")
    products = count_products(ctx)
    ctx.note("query", f"{products:,} products")
    ids = sample_ids(ctx, 1000)
    categories = [category(n, s) for n in range(s.categories)]
    requests = []
    for n in range(2000):
        if n % 2 == 0:
            requests.append(Request("GET", f"/api/v1/products/{ids[n % len(ids)]}"))
        else:
            requests.append(Request("GET", list_path(categories[n % len(categories)])))
    work = {
        "ids": ids,
        "lists": [
            {
                "filter": {"status": "active", "category": c, "in_stock": True},
                "sort": "price_cents",
                "direction": 1,
                "limit": 20,
            }
            for c in categories
        ],
    }
    work_file = OUT_DIR / "query-work.json"
    work_file.write_text(json.dumps(work))
    gateway = ctx.env["GATEWAY_URL"]
    run_wrk(gateway, requests, seconds=2, connections=s.concurrency)  # warm-up
    ours, raws = [], []
    for rep in range(s.reps):
        split = CpuByPart()
        ours.append(run_wrk(gateway, requests, seconds=s.seconds, connections=s.concurrency))
        cpu_ours, split = split.stop(), CpuByPart()
        cmd = python_module(
            "benchmarks.raw_query", "--mongodb-url", ctx.mongo,
            "--database", ctx.database, "--work", str(work_file),
            "--seconds", str(s.seconds), "-c", str(s.concurrency),
        )  # fmt: skip
        raws.append(float(measured(lambda c=cmd: run_json(c, timeout=s.seconds + 120))["rps"]))  # type: ignore[misc,index]
        cpu_raw = split.stop()
        ctx.note(
            "query",
            f"rep {rep + 1}: gateway {ours[-1].rps:,.0f}/s (p50 {ours[-1].p50_ms:.1f} ms, "
            f"p99 {ours[-1].p99_ms:.1f} ms, {ours[-1].errors_text}); raw {raws[-1]:,.0f}/s",
        )
        if rep == 0:
            ctx.note("query", f"gateway window, {cpu_ours}")
            ctx.note("query", f"raw window, {cpu_raw}")
    profile_http(ctx, "query", ("query",), requests, s.seconds)
    rps, raw_rps = median([o.rps for o in ours]), median(raws)
    return {
        "products": products,
        "rps": rps,
        "p50_ms": median([o.p50_ms for o in ours]),
        "p99_ms": median([o.p99_ms for o in ours]),
        "failures": wrk_failures(ours),
        "raw_rps": raw_rps,
        "ratio": paired_ratio([o.rps for o in ours], raws),
    }


# --------------------------------------------------------------------------- 5. end to end


def caught_up(ctx: Context, limit: float = 60, stage: str = "e2e") -> None:
    """Let the relay and the live projector finish what earlier runs left, so each rep starts
    level: the outbox published, then the projector's group level on both topics.

    The group reads the products and the reviews topic, so its committed offsets add up to
    both topics' sizes once it is level (compared with the products topic alone, a group
    with reviews committed looked level while products waited). On a fresh stack nothing was
    published and the group never commits, so there is nothing to wait for.
    """
    query = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    try:
        wait_for("outbox published", lambda: sql(ctx.dsn, query) == 0, limit)
        topics = (ctx.env["EVENTS_TOPIC"], ctx.env["REVIEWS_TOPIC"])
        total = sum(asyncio.run(kafka.topic_size(ctx.bootstrap, topic)) for topic in topics)
        if total:
            asyncio.run(kafka.watch_group(ctx.bootstrap, "catalog-projector", total, limit))
    except RuntimeError:
        ctx.note(stage, f"the pipeline had not caught up after {limit:.0f}s; going on")


# Commands watched per second at most: each watcher's read waits in the query service, which
# polls the store for it, so watching every command at hundreds per second loads the pipeline
# being measured (seen: p50 1.2 s at 242/s watching all, the projector waiting on a store busy
# with the watchers' reads). The rest of the rate is plain command load.
WATCHED_PER_SECOND = 20


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def projector_buckets(ctx: Context, wait: float = 30) -> list[tuple[float, float]] | None:
    """The harness's projector's commit-to-view buckets (it may be starting); None if it
    never answers."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return commit_to_view_buckets(ctx.projector_metrics_url)
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def commit_to_view_window(
    ctx: Context, before: list[tuple[float, float]] | None
) -> tuple[float | None, float | None, int]:
    """The projector's own commit-to-view p50/p99 (ms) and count since `before`."""
    after = projector_buckets(ctx)
    if before is None or after is None:
        return None, None, 0
    earlier = dict(before)
    window = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]
    p50, p99 = histogram_quantile(0.5, window), histogram_quantile(0.99, window)
    return (
        p50 * 1000 if p50 is not None else None,
        p99 * 1000 if p99 is not None else None,
        int(max((count for _, count in window), default=0)),
    )


GAUGE_LINE = "projector_categories_staleness_seconds "


class StalenessWatch:
    """The projector's categories staleness gauge, read every half second while it runs: how
    far behind the category figures fell under a load (their measured bound)."""

    def __init__(self, metrics_url: str) -> None:
        self._url = metrics_url
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> StalenessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with urllib.request.urlopen(self._url, timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith(GAUGE_LINE):
                    self.samples.append(float(line.split()[-1]))


def e2e_runs(
    ctx: Context, rate: float, label: str, staleness: list[float] | None = None
) -> tuple[float, float, int]:
    """p50 and p99 (ms) of response -> readable over every rep's watched commands together
    (one not readable within the window at the window's length), and the failures."""
    s = ctx.sizes
    runs: list[list[float]] = []
    failures = 0
    watch_every = max(1, round(rate / WATCHED_PER_SECOND))
    for rep in range(s.reps):
        caught_up(ctx)
        cmd = python_module(
            "benchmarks.paced_http", "e2e", "--base", ctx.env["GATEWAY_URL"],
            "--signing-key", ctx.env["SIGNING_KEY_FILE"],
            "--rate", f"{rate:.1f}", "--seconds", str(s.latency_seconds),
            "--categories", str(s.categories), "--watch-every", str(watch_every),
        )  # fmt: skip
        split = CpuByPart()
        before = projector_buckets(ctx)
        with StalenessWatch(ctx.projector_metrics_url) as watch:
            result: Any = measured(lambda c=cmd: run_json(c, timeout=s.latency_seconds + 300))  # type: ignore[misc]
        if staleness is not None:
            staleness.extend(watch.samples)
        view_p50, view_p99, events = commit_to_view_window(ctx, before)
        if rep == 0:
            ctx.note("e2e", f"{label} window, {split.stop()}")
        runs.append([float(sample) for sample in result["samples_ms"]])
        failures += int(result["failures"])
        ctx.note(
            "e2e",
            f"{label} rep {rep + 1} at {rate:.0f}/s: p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms ({result['watched']} of {result['commands']} "
            f"commands watched; {result['failures']} failures, of which {result['late']} not "
            f"readable within {result['window_ms'] / 1000:.0f} s and counted at that); the "
            f"projector's commit-to-view over the window: p50 {fmt_ms(view_p50)}, "
            f"p99 {fmt_ms(view_p99)} ({events} events)",
        )
        if float(result["p50_ms"]) > 10_000:
            ctx.note("e2e", f"{label}: the pipeline falls behind at {rate:.0f}/s; no more reps")
            break
    p50, p99 = pooled(runs)
    return p50, p99, failures


def low_rate(ctx: Context, label: str, rate: float = 5.0) -> None:
    """One run at a lower rate, for reference: at 5/s, which any read-model server keeps up
    with, the pipeline's own latency; at half the target's rate, whether the pipeline keeps up
    where it fell behind. Every command is watched up to WATCHED_PER_SECOND a second."""
    caught_up(ctx)
    watch_every = max(1, round(rate / WATCHED_PER_SECOND))
    cmd = python_module(
        "benchmarks.paced_http", "e2e", "--base", ctx.env["GATEWAY_URL"],
        "--signing-key", ctx.env["SIGNING_KEY_FILE"],
        "--rate", f"{rate:.1f}", "--seconds", str(ctx.sizes.latency_seconds),
        "--categories", str(ctx.sizes.categories), "--watch-every", str(watch_every),
    )  # fmt: skip
    result: Any = run_json(cmd, timeout=ctx.sizes.latency_seconds + 300)
    watched = "every one watched" if watch_every == 1 else f"every {watch_every}th watched"
    ctx.note(
        "e2e",
        f"{label} at {rate:.0f}/s (for reference, not the target's rate): p50 "
        f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms ({result['watched']} of "
        f"{result['commands']} commands, {watched}; {result['failures']} failures)",
    )


def e2e_stage(ctx: Context) -> dict[str, float]:
    """Command response -> readable through the query API, at 25% of the max command rate, on
    a catalog of Sizes.catalog_products."""
    live_start(ctx, "relay", "projector")
    seed_models(ctx, ctx.sizes.catalog_products, "e2e")
    products = count_products(ctx)
    rate = max(1.0, ctx.command_rps / 4)
    ctx.note("e2e", f"{products:,} products to start with; creates at {rate:.0f}/s")
    staleness: list[float] = []
    p50, p99, failures = e2e_runs(ctx, rate, "notify", staleness)
    stale_p99 = percentile(staleness, 99) if staleness else None
    ctx.note(
        "e2e",
        f"categories staleness under this load: max {max(staleness, default=0.0):.2f} s, "
        f"p99 {stale_p99 or 0.0:.2f} s ({len(staleness)} samples of the projector's gauge)",
    )
    if p50 > 1000:  # behind at the target's rate: where does it keep up?
        low_rate(ctx, "notify", rate / 2)
    low_rate(ctx, "notify")
    live_stop(ctx, "relay")
    service = leading_relay(
        "relay-polling", COMMAND_RELAY_USE_NOTIFY="false", COMMAND_RELAY_POLL_INTERVAL_SECONDS="0.5"
    )
    try:
        _, polling_p99, polling_failures = e2e_runs(ctx, rate, "500 ms polling")
        low_rate(ctx, "500 ms polling")
    finally:
        service.stop()
        live_start(ctx, "relay")
    return {
        "products": products,
        "rate": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "failures": failures,
        "polling_p99_ms": polling_p99,
        "polling_failures": polling_failures,
        "categories_staleness_max_s": max(staleness, default=0.0),
        "categories_staleness_p99_s": stale_p99 or 0.0,
    }


# --------------------------------------------------------------------------- 6. single model


def single_model_stage(ctx: Context) -> dict[str, float]:
    """List and category figures: the query service vs the same from PostgreSQL, under writes,
    on a catalog of Sizes.catalog_products."""
    live_start(ctx, "relay", "projector")
    s = ctx.sizes
    caught_up(ctx, 900)  # measure the reads under the steady writes, not under a backlog
    ids = seed_models(ctx, s.catalog_products, "single_model")
    products = count_products(ctx)
    port = free_port()
    app = Service(
        "single-model-app",
        python_module("benchmarks.single_model_app", "--dsn", ctx.dsn, "--port", str(port)),
        {},
    )
    base = f"http://127.0.0.1:{port}"
    writer: subprocess.Popen[bytes] | None = None
    figures: dict[str, list[WrkResult]] = {}
    try:
        wait_for("single-model app", lambda: _answers(base + "/healthz"), 60)
        ids_file = OUT_DIR / "model-ids.txt"
        ids_file.write_text("\n".join(ids))
        rate = max(1.0, ctx.command_rps / 4)
        load = python_module(
            "benchmarks.paced_http", "writes", "--base", ctx.env["GATEWAY_URL"],
            "--signing-key", ctx.env["SIGNING_KEY_FILE"], "--rate", f"{rate:.1f}",
            "--seconds", "100000", "--ids", str(ids_file), "--categories", str(s.categories),
        )  # fmt: skip
        writer = subprocess.Popen(load, stdout=subprocess.DEVNULL)
        ctx.note("single_model", f"{products:,} products; steady writes at {rate:.0f}/s")
        lists = [Request("GET", list_path(c)) for c in bench_categories(s)]
        stats = [Request("GET", "/api/v1/categories")]
        query = ctx.env["QUERY_URL"]
        for rep in range(s.reps):
            for key, url, reqs in (
                ("list_rps", query, lists),
                ("baseline_list_rps", base, lists),
                ("categories_rps", query, stats),
                ("baseline_categories_rps", base, stats),
            ):
                split = CpuByPart()
                result = run_wrk(url, reqs, seconds=s.seconds, connections=s.concurrency)
                cpu = split.stop()
                figures.setdefault(key, []).append(result)
                ctx.note(
                    "single_model",
                    f"rep {rep + 1} {key}: {result.rps:,.1f}/s (p50 {result.p50_ms:.1f} ms, "
                    f"{result.errors_text})",
                )
                if rep == 0:  # what dominates, should a target be missed
                    ctx.note("single_model", f"{key.removesuffix('_rps')} window, {cpu}")
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait()
        app.stop()

    def rates(key: str) -> list[float]:
        return [result.rps for result in figures[key]]

    return {
        "products": products,
        **{key: median(rates(key)) for key in figures},
        "list_ratio": paired_ratio(rates("list_rps"), rates("baseline_list_rps")),
        "categories_ratio": paired_ratio(rates("categories_rps"), rates("baseline_categories_rps")),
        "failures": wrk_failures(figures["list_rps"] + figures["categories_rps"]),
        "baseline_failures": wrk_failures(
            figures["baseline_list_rps"] + figures["baseline_categories_rps"]
        ),
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
