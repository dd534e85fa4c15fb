"""catalogctl reconcile compares every read model with the write model, finds exactly the read
documents that differ, and repairs exactly those."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import CatalogEvent
from catalog_contracts.read_models import (
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    RATINGS_COLLECTION,
    REVIEWS_COLLECTION,
)
from catalog_read_models import product_detail, product_list
from catalog_read_models.product_documents import copy_figures
from catalog_read_models.projection import Projection
from catalog_read_models.store import open_store
from catalogctl.compare import compare
from catalogctl.reconcile import repair
from command_service.adapters.postgres import UnitOfWorkFactory
from command_service.handlers import (
    AdjustStock,
    CommandHandlers,
    CreateProduct,
    Discontinue,
    RemoveReview,
    RequestContext,
    SubmitReview,
)
from tests.fixtures.infra import REPO, Infra

CATALOGCTL = REPO / ".venv" / "bin" / "catalogctl"

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]


async def write_catalog(pg_pool: asyncpg.Pool) -> tuple[list[str], list[str], list[CatalogEvent]]:
    handlers = CommandHandlers(UnitOfWorkFactory(pg_pool))
    events: list[CatalogEvent] = []
    ids = []
    for i in range(12):
        created = await handlers.create_product(
            CreateProduct(
                name=f"p{i}", description=None, category=f"c{i % 3}", price=f"{i + 1}.00", stock=i
            ),
            RequestContext(),
        )
        events += created.events
        ids.append(str(created.outcome.aggregate_id))
    events += (await handlers.adjust_stock(AdjustStock(UUID(ids[0]), 5), RequestContext())).events
    events += (await handlers.discontinue(Discontinue(UUID(ids[1])), RequestContext())).events
    reviews = []
    # 5 + 4 + 4 = 13 over 3 = 4.333 -> "4.33"; the product of ids[3] gets 1, then 2 (half-up).
    for product, rating, author in [
        (ids[2], 5, "a"),
        (ids[2], 4, "b"),
        (ids[2], 4, "c"),
        (ids[2], 1, "d"),
        (ids[3], 1, "a"),
        (ids[3], 2, "b"),
        (ids[4], 3, "a"),
    ]:
        submitted = await handlers.submit_review(
            SubmitReview(UUID(product), rating, f"{rating} stars", None, author),
            RequestContext(),
        )
        events += submitted.events
        reviews.append(str(submitted.outcome.aggregate_id))
    events += (
        await handlers.remove_review(RemoveReview(UUID(reviews[3])), RequestContext())
    ).events
    return ids, reviews, events


async def test_the_projection_of_the_events_equals_the_write_model(
    pg_pool: asyncpg.Pool, mongo_db: Db
) -> None:
    ids, _, events = await write_catalog(pg_pool)
    projection = await Projection.open(mongo_db)
    await projection.apply(reversed(events))  # reviews before their products
    await projection.refresh_categories()
    async with pg_pool.acquire() as conn:
        result = await compare(conn, mongo_db)
    assert result.consistent, result.summary()
    detail = await mongo_db[PRODUCT_DETAIL_COLLECTION].find_one({"_id": ids[2]})
    assert detail is not None
    assert detail["rating"]["average"] == "4.33"
    listed = await mongo_db[PRODUCT_LIST_COLLECTION].find_one({"_id": ids[3]})
    assert listed is not None
    assert (listed["rating_average"], listed["rating_sort"]) == ("1.50", 150)


async def test_reconcile_finds_and_repairs_exactly_the_corrupted_documents(
    pg_pool: asyncpg.Pool, mongo_db: Db
) -> None:
    ids, reviews, _ = await write_catalog(pg_pool)

    async with pg_pool.acquire() as conn:
        empty = await compare(conn, mongo_db)
        assert len(empty.of("product_list").missing) == 12
        assert len(empty.of("reviews").missing) == len(reviews)
        await repair(empty, mongo_db)
        clean = await compare(conn, mongo_db)
        assert clean.consistent, clean.summary()

        listed = mongo_db[PRODUCT_LIST_COLLECTION]
        detail = mongo_db[PRODUCT_DETAIL_COLLECTION]
        await listed.update_one({"_id": ids[5]}, {"$set": {"price": "0.01"}})
        await listed.delete_one({"_id": ids[6]})
        await detail.update_one({"_id": ids[7]}, {"$set": {"version": 0}})
        await detail.update_one({"_id": ids[4]}, {"$set": {"rating.average": "1.00"}})
        await mongo_db[REVIEWS_COLLECTION].update_one({"_id": reviews[0]}, {"$set": {"title": "x"}})
        # The tally loses a review: the figures of both documents are recomputed from it.
        await mongo_db[RATINGS_COLLECTION].update_one(
            {"_id": ids[3]}, {"$unset": {f"reviews.{reviews[5]}": ""}, "$inc": {"rev": 1}}
        )
        await mongo_db["categories"].update_one({"_id": "c0"}, {"$set": {"total_stock": -1}})
        # The projector copies the damaged tally's figures (as it would after the damage).
        store = await open_store(mongo_db)
        for model in (product_list.READ_MODEL, product_detail.READ_MODEL):
            await copy_figures(
                model, store, mongo_db[model.name], mongo_db[RATINGS_COLLECTION], [ids[3]]
            )

        found = await compare(conn, mongo_db)
        assert found.of("product_list").different == {
            ids[5]: ["price"],
            ids[3]: ["rating_average", "rating_count", "rating_sort"],
        }
        assert found.of("product_list").missing == [ids[6]]
        assert found.of("product_detail").different == {
            ids[7]: ["version"],
            ids[4]: ["rating"],
            ids[3]: ["latest_reviews", "rating"],
        }
        assert found.of("reviews").different == {
            reviews[0]: ["title"],
            f"{RATINGS_COLLECTION}/{ids[3]}": [
                "count",
                "average",
                "distribution",
                "sort",
                "latest",
            ],
        }
        assert found.of("categories").different == {"c0": ["total_stock"]}
        await repair(found, mongo_db)
        after = await compare(conn, mongo_db)
    assert after.consistent, after.summary()


async def catalogctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the installed `catalogctl` with `env`; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        str(CATALOGCTL),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_line_reports_then_repairs(
    pg_pool: asyncpg.Pool, database_url: str, infra: Infra, mongo_db: Db
) -> None:
    await write_catalog(pg_pool)
    env = {
        "PATH": os.environ["PATH"],
        "STACK_ENV": "/nonexistent",
        "DATABASE_URL": database_url,
        "MONGODB_URL": infra.mongodb_url,
        "MONGODB_DATABASE": mongo_db.name,
    }
    status, out, _ = await catalogctl(env, "reconcile")
    assert (status, "run with --repair" in out) == (1, True), out
    status, out, _ = await catalogctl(env, "reconcile", "--repair")
    assert status == 0, out
    status, out, _ = await catalogctl(env, "reconcile")
    assert (status, "consistent with the write model" in out) == (0, True), out


async def test_the_command_line_fails_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "STACK_ENV": str(tmp_path / "none")}
    status, _, err = await catalogctl(env, "reconcile")
    assert status == 2
    assert err.strip().splitlines() == [
        "catalogctl: DATABASE_URL and MONGODB_URL not set: run `make up` (it writes "
        ".run/stack.env), set STACK_ENV to a stack.env, or export them"
    ]
    unreachable = {
        **env,
        "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/db",
        "MONGODB_URL": "mongodb://127.0.0.1:1/",
    }
    status, _, err = await catalogctl(unreachable, "reconcile")
    assert status == 2
    [line] = err.strip().splitlines()
    assert line.startswith("catalogctl: ")
