"""Stage 7: the product page (product, rating, newest reviews) from `product_detail` vs the
single model's joins on PostgreSQL, under a steady load of product and review commands."""

from __future__ import annotations

import asyncio
import random
import subprocess
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from benchmarks.common import OUT_DIR, Service, free_port, median, python_module, say
from benchmarks.page_data import PRODUCT_COLUMNS, REVIEW_COLUMNS, SEEDED, seeded_product
from benchmarks.profiles import CpuByPart
from benchmarks.stages import (
    Context,
    _answers,
    category,
    caught_up,
    live_start,
    paired_ratio,
    profile_http,
    sql,
    wait_for,
)
from benchmarks.wrk import Request, WrkResult, run_wrk
from catalog_contracts.read_models import (
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    RATINGS_COLLECTION,
    REVIEWS_COLLECTION,
    Generation,
)
from catalog_contracts.read_models import generation_from_pointer as pointer_to_generation

STAGE = "product_page"
BATCH = 1_000
SAMPLE = 1_000  # product ids wrk cycles over


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
    await projection.recompute_categories(
        [category(n, ctx.sizes) for n in range(ctx.sizes.categories)]
    )


async def leftovers(db: Any, generation: Generation) -> set[str]:
    """Ids of seeded product documents, found by name: an interrupted run's may have no rows."""
    ids: set[str] = set()
    seeded = {"name": {"$regex": f"^{SEEDED}"}}
    for name in (PRODUCT_DETAIL_COLLECTION, PRODUCT_LIST_COLLECTION):
        found = db[generation.collection(name)].find(seeded, {"_id": 1})
        ids |= {d["_id"] async for d in found}
    return ids


def unseed_pages(ctx: Context) -> None:
    """Remove the seeded products, every review of them (the write load's too), their documents.

    FerretDB v1 filters `$in` after reading the whole collection, so a delete of a few thousand
    ids by `$in` scans the tallies again and again (minutes at 20,000 products): the product
    documents go one category at a time (under its 65,535 documents per delete), the tallies
    and the review documents one `_id` at a time, which it looks up by its index.
    """

    async def go() -> None:
        conn: asyncpg.Connection = await asyncpg.connect(ctx.dsn)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ctx.mongo, tz_aware=True)
        try:
            seeded_rows = "SELECT id FROM products WHERE name LIKE $1"
            found = await conn.fetch(f"SELECT id::text FROM ({seeded_rows}) s", SEEDED + "%")
            # Only the write load's reviews have documents: the seeded ones went to tallies.
            written = await conn.fetch(
                f"SELECT id::text FROM reviews WHERE product_id IN ({seeded_rows})"
                " AND author NOT LIKE 'seed-%'",
                SEEDED + "%",
            )
            db = client[ctx.database]
            generation = pointer_to_generation(
                await db[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID})
            )
            # Documents an earlier run left behind without their rows count too.
            ids = sorted({r["id"] for r in found} | await leftovers(db, generation))
            for name in (PRODUCT_DETAIL_COLLECTION, PRODUCT_LIST_COLLECTION):
                for n in range(ctx.sizes.categories):
                    await db[generation.collection(name)].delete_many(
                        {"category": category(n, ctx.sizes), "name": {"$regex": f"^{SEEDED}"}}
                    )
            await delete_each(db[generation.collection(RATINGS_COLLECTION)], ids)
            await delete_each(
                db[generation.collection(REVIEWS_COLLECTION)], [r["id"] for r in written]
            )
            async with conn.transaction():
                await conn.execute(
                    f"DELETE FROM reviews WHERE product_id IN ({seeded_rows})", SEEDED + "%"
                )
                await conn.execute("DELETE FROM products WHERE name LIKE $1", SEEDED + "%")
            await recompute(db, ctx)
            say(f"product page: removed {len(ids):,} seeded products")
        finally:
            await conn.close()
            await client.close()

    asyncio.run(go())


async def delete_each(collection: Any, ids: list[str]) -> None:
    """Delete these documents by `_id`, 16 at a time."""
    limit = asyncio.Semaphore(16)

    async def one(key: str) -> None:
        async with limit:
            await collection.delete_one({"_id": key})

    await asyncio.gather(*(one(key) for key in ids))


def product_page_stage(ctx: Context) -> dict[str, float]:
    """The product page from `product_detail` through the gateway vs the single model's SQL."""
    live_start(ctx, "relay", "projector")
    s = ctx.sizes
    caught_up(ctx, 900, STAGE)  # measure the reads under the steady writes, not under a backlog
    unseed_pages(ctx)  # what an interrupted run left
    ids = seed_pages(ctx, s.page_products)
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
        )  # fmt: skip
        writer = subprocess.Popen(load, stdout=subprocess.DEVNULL)
        ctx.note(
            STAGE,
            f"{len(ids):,} products with 0-50 reviews each (uniform; {reviews:,} reviews in the "
            f"write model, 1 in 20 removed); steady writes at {rate:.0f}/s (a third each "
            "creates, stock adjustments, reviews); the single model runs one SQL statement "
            "per page (lateral subqueries for the rating and the 5 newest reviews)",
        )
        sample = random.Random(5).sample(ids, min(SAMPLE, len(ids)))
        pages = [Request("GET", f"/api/v1/products/{product_id}") for product_id in sample]
        targets = {
            "gateway": ctx.env["GATEWAY_URL"],
            "baseline": base,
            "query service (no gateway)": ctx.env["QUERY_URL"],
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
        try:
            # The writes still in the pipeline would bring removed documents back.
            caught_up(ctx, 300, STAGE)
            unseed_pages(ctx)
        except Exception as exc:  # the figures stand; the stack keeps the extra products
            ctx.note(STAGE, f"removing the seeded products failed: {exc}"[:300])
    ours, theirs = figures["gateway"], figures["baseline"]
    return {
        "rps": median([r.rps for r in ours]),
        "p50_ms": median([r.p50_ms for r in ours]),
        "p99_ms": median([r.p99_ms for r in ours]),
        "baseline_rps": median([r.rps for r in theirs]),
        "baseline_p50_ms": median([r.p50_ms for r in theirs]),
        "ratio": paired_ratio([r.rps for r in ours], [r.rps for r in theirs]),
    }
