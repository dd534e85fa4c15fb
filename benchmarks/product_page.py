"""Stage 7: the product page (product, rating, newest reviews) from `product_detail` vs the
single model's joins on PostgreSQL, under a steady load of product and review commands.

The ratio compares the two through the same layers: the query service and the single model's
app, each asked directly. The page through the gateway is measured too (`rps`). The seeded
products, their reviews and documents go once the stage ends (stages.clear_catalog).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from benchmarks.common import OUT_DIR, Service, free_port, median, python_module, say
from benchmarks.page_data import PRODUCT_COLUMNS, REVIEW_COLUMNS, seeded_product
from benchmarks.profiles import CpuByPart
from benchmarks.samples import paired_ratio
from benchmarks.stages import (
    Context,
    _answers,
    bench_categories,
    category,
    caught_up,
    count_products,
    live_start,
    profile_http,
    sql,
    wait_for,
    wrk_failures,
)
from benchmarks.wrk import Request, WrkResult, run_wrk
from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    RATINGS_COLLECTION,
)
from catalog_contracts.read_models import generation_from_pointer as pointer_to_generation

STAGE = "product_page"
BATCH = 1_000
SAMPLE = 1_000  # product ids wrk cycles over
# The query service asked without the gateway: the same layers as the single model's app.
DIRECT = "query service (no gateway)"


def seed_pages(ctx: Context, count: int) -> list[str]:
    """`count` products with their reviews in PostgreSQL and their documents in the read model.

    Written directly (COPY; insert_many of the projector's own documents and tallies), not
    through the pipeline: its speed is stages 2 and 3's. Returns the product ids.
    """
    rng = random.Random(17)
    now = datetime.now(UTC)
    ids: list[str] = []

    async def go() -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ctx.dsn)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.mongo, tz_aware=True)
        reviews = 0
        try:
            db = client[ctx.database]
            generation = pointer_to_generation(
                await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
            )
            for start in range(0, count, BATCH):
                batch = [
                    seeded_product(n, category(n, ctx.sizes), rng, now)
                    for n in range(start, min(count, start + BATCH))
                ]
                rows = [r for p in batch for r in p.review_rows()]
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "products",
                        records=[p.product_row() for p in batch],
                        columns=PRODUCT_COLUMNS,
                    )
                    await conn.copy_records_to_table(
                        "reviews", records=rows, columns=REVIEW_COLUMNS
                    )
                documents = [p.documents() for p in batch]
                for name, docs in (
                    (PRODUCT_DETAIL_COLLECTION, [detail for detail, _ in documents]),
                    (PRODUCT_LIST_COLLECTION, [listed for _, listed in documents]),
                    (RATINGS_COLLECTION, [p.tally() for p in batch]),
                ):
                    await db[generation.collection(name)].insert_many(docs, ordered=False)
                ids.extend(str(p.state.id) for p in batch)
                reviews += len(rows)
                say(f"product page: seeded {len(ids):,} of {count:,} products, {reviews:,} reviews")
            await recompute(db, ctx)
        finally:
            await conn.close()
            await client.close()

    asyncio.run(go())
    return ids


async def recompute(db: Any, ctx: Context) -> None:
    """The category figures the projector's way, after products came or went behind its back."""
    from catalog_read_models.projection import Projection

    projection = await Projection.open(db)
    await projection.recompute_categories(bench_categories(ctx.sizes))


def product_page_stage(ctx: Context) -> dict[str, float]:
    """The product page from `product_detail` through the gateway vs the single model's SQL."""
    live_start(ctx, "relay", "projector")
    s = ctx.sizes
    caught_up(ctx, 900, STAGE)  # measure the reads under the steady writes, not under a backlog
    ids = seed_pages(ctx, s.page_products)
    products = count_products(ctx)
    reviews = int(sql(ctx.dsn, "SELECT count(*) FROM reviews"))
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
        ids_file = OUT_DIR / "page-ids.txt"
        ids_file.write_text("\n".join(ids))
        rate = max(1.0, ctx.command_rps / 4)
        load = python_module(
            "benchmarks.paced_http", "page-writes", "--base", ctx.env["GATEWAY_URL"],
            "--signing-key", ctx.env["SIGNING_KEY_FILE"],
            "--rate", f"{rate:.1f}", "--seconds", "100000", "--ids", str(ids_file),
            "--categories", str(s.categories),
        )  # fmt: skip
        writer = subprocess.Popen(load, stdout=subprocess.DEVNULL)
        ctx.note(
            STAGE,
            f"{products:,} products, 0-50 reviews each (uniform; {reviews:,} reviews in the "
            f"write model, 1 in 20 removed); steady writes at {rate:.0f}/s (a third each "
            "creates, stock adjustments, reviews); the single model runs one SQL statement "
            "per page (lateral subqueries for the rating and the 5 newest reviews)",
        )
        sample = random.Random(5).sample(ids, min(SAMPLE, len(ids)))
        pages = [Request("GET", f"/api/v1/products/{product_id}") for product_id in sample]
        targets = {
            "gateway": ctx.env["GATEWAY_URL"],
            "baseline": base,
            DIRECT: ctx.env["QUERY_URL"],
        }
        for url in targets.values():  # warm-up: pools, caches, the documents' pages
            run_wrk(url, pages, seconds=2, connections=s.concurrency)
        for rep in range(s.reps):
            # Alternate who goes first: the shared machine's load drifts within a rep too.
            order = list(targets.items())
            for key, url in order if rep % 2 == 0 else order[::-1]:
                split = CpuByPart()
                result = run_wrk(url, pages, seconds=s.seconds, connections=s.concurrency)
                cpu = split.stop()
                figures.setdefault(key, []).append(result)
                ctx.note(
                    STAGE,
                    f"rep {rep + 1} {key}: {result.rps:,.1f}/s (p50 {result.p50_ms:.1f} ms, "
                    f"p99 {result.p99_ms:.1f} ms, {result.errors_text})",
                )
                if rep == 0:  # what dominates, should the target be missed
                    ctx.note(STAGE, f"{key} window, {cpu}")
        profile_http(ctx, STAGE, ("query",), pages, s.seconds)
        written = sql(ctx.dsn, "SELECT count(*) FROM reviews WHERE author LIKE 'bench-%'")
        ctx.note(STAGE, f"the write load added {written:,} reviews while measuring")
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait()
        app.stop()
    ours, direct, theirs = figures["gateway"], figures[DIRECT], figures["baseline"]
    return {
        "products": products,
        "rps": median([r.rps for r in ours]),
        "p50_ms": median([r.p50_ms for r in ours]),
        "p99_ms": median([r.p99_ms for r in ours]),
        "direct_rps": median([r.rps for r in direct]),
        "direct_p50_ms": median([r.p50_ms for r in direct]),
        "baseline_rps": median([r.rps for r in theirs]),
        "baseline_p50_ms": median([r.p50_ms for r in theirs]),
        "ratio": paired_ratio([r.rps for r in direct], [r.rps for r in theirs]),
        "failures": wrk_failures(ours + direct),
        "baseline_failures": wrk_failures(theirs),
    }
