"""Every read the query API makes is answered from an index.

The query side's reads are captured as the driver sends them (a command listener), for every
filter and every sort the list allows, first pages and pages after a cursor, before and after
the list's windows are learned, and the review pages, the product page and the categories; the
server then explains each one. A collection scan anywhere fails, and so does an index that
does not serve the read's filter (its category) or its window (the sort key). The one read
allowed to scan is the categories', a collection of one document per category.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import ReviewState
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    REVIEWS_COLLECTION,
    review_document,
)
from catalog_read_models.projection import Projection
from query_service.ports import ProductFilter, SortKey
from query_service.read_models import SORTS, ProductReadModel
from tests.fixtures.events import T0, ProductHistory
from tests.fixtures.fake_read_model import product_documents
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.integration

CATEGORIES = [f"category-{n}" for n in range(8)]
PRODUCTS = 1_600
FILTERS: dict[str, ProductFilter] = {
    "none": ProductFilter(),
    "category": ProductFilter(category="category-3"),
    "in_stock": ProductFilter(in_stock=True),
    "price range": ProductFilter(min_price_cents=10_000, max_price_cents=60_000),
    "q": ProductFilter(q="widget 1"),
    "category and in_stock": ProductFilter(category="category-5", in_stock=False),
    "discontinued": ProductFilter(status="discontinued"),
}
SORT_FIELDS = {"name": "name_key", "price_cents": "price_cents"}


class Finds(monitoring.CommandListener):
    """Every `find` and `aggregate` command sent, as sent."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        # Not the generation pointer's read: one document by _id, of a collection that holds
        # nothing else (and that these tests never create).
        if (
            event.command_name in ("find", "aggregate")
            and event.command.get(event.command_name) != META_COLLECTION
        ):
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[dict[str, Any]]:
        taken, self.commands = self.commands, []
        return taken


def _stages(plan: Any) -> Iterator[dict[str, Any]]:
    """Every stage of an explained plan, whichever server's format."""
    if isinstance(plan, dict):
        if "stage" in plan:
            yield plan
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


def _index_fields(stage: dict[str, Any]) -> set[str]:
    """The fields an index scan uses: MongoDB names its key pattern, DocumentDB the predicates
    it hands to the index."""
    fields = set(stage.get("keyPattern", {}))
    if stage.get("indexName") == "_id_":  # DocumentDB names no predicate of its primary key
        fields.add("_id")
    for predicate in stage.get("indexFilterSet", []):
        for condition in predicate.values():
            fields.update(condition)
    return fields


async def _explain(db: AsyncDatabase[dict[str, Any]], command: dict[str, Any]) -> dict[str, Any]:
    sent = {k: v for k, v in command.items() if k not in ("lsid", "$db", "$clusterTime")}
    if "aggregate" in sent:
        sent.pop("cursor", None)
        sent["cursor"] = {}
    explained: dict[str, Any] = await db.command("explain", sent, verbosity="queryPlanner")
    return explained


def _assert_indexed(explained: dict[str, Any], command: dict[str, Any], needs: set[str]) -> None:
    stages = list(_stages(explained.get("queryPlanner", explained)))
    kinds = [stage["stage"] for stage in stages]
    assert "COLLSCAN" not in kinds, (command, explained)
    scans = [stage for stage in stages if stage["stage"] in ("IXSCAN", "IDHACK", "EXPRESS_IXSCAN")]
    assert scans, (command, explained)
    used = set().union(*(_index_fields(stage) for stage in scans))
    assert needs <= used, (needs, used, command, explained)


@pytest.fixture
async def seeded(mongo_db: AsyncDatabase[dict[str, Any]]) -> str:
    """A catalog of PRODUCTS products over the read models' real indexes; a reviewed one's id."""
    await (await Projection.open(mongo_db)).ensure_indexes()
    listed, detailed = [], []
    for n in range(PRODUCTS):
        history = ProductHistory(
            name=f"widget {n}",
            category=CATEGORIES[n % len(CATEGORIES)],
            price=f"{(n * 7919) % 100_000 / 100:.2f}",
            stock=n % 3,
        )
        if n % 10 == 9:
            history.state = history.state.model_copy(update={"status": "discontinued"})
        item, detail = product_documents(history.state)
        listed.append(item)
        detailed.append(detail)
    reviewed = ProductHistory().state
    reviews = [
        review_document(
            ReviewState(
                id=uuid4(),
                product_id=reviewed.id,
                rating=1 + n % 5,
                title=f"review {n}",
                body=None,
                author=f"author {n}",
                status="published",
                created_at=T0,
                updated_at=T0,
                version=1,
            )
        )
        for n in range(60)
    ]
    item, detail = product_documents(reviewed, reviews)
    await mongo_db[PRODUCT_LIST_COLLECTION].insert_many([*listed, item])
    await mongo_db[PRODUCT_DETAIL_COLLECTION].insert_many([*detailed, detail])
    await mongo_db[REVIEWS_COLLECTION].insert_many(reviews)
    return str(reviewed.id)


@pytest.fixture
async def listened(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]], seeded: str
) -> AsyncIterator[tuple[ProductReadModel, Finds]]:
    """The query side's read model over the seeded catalog, with every find it sends captured
    (the generation pointer's first read already taken)."""
    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_url, event_listeners=[finds]
    )
    try:
        read_model = ProductReadModel(client[mongo_db.name])
        await read_model.generation()
        finds.take()
        yield read_model, finds
    finally:
        await client.close()


async def test_every_list_read_is_answered_from_an_index(
    mongo_db: AsyncDatabase[dict[str, Any]], listened: tuple[ProductReadModel, Finds]
) -> None:
    read_model, finds = listened
    explained = 0
    windowed: set[str] = set()  # sorts whose learned (bounded) windows were read
    for name, where in FILTERS.items():
        for sort in SORTS:
            sort_key: SortKey = sort  # type: ignore[assignment]
            field = SORTS[sort].field
            # Twice: the second time the windows learned from the first are read.
            for _ in range(2):
                cursor = None
                for _page in range(3):
                    page = await read_model.list_products(
                        where, sort=sort_key, limit=20, cursor=cursor
                    )
                    for command in finds.take():
                        needs = set()
                        if where.category is not None:
                            needs.add("category")
                        window = SORT_FIELDS.get(field, field)
                        if window in str(command.get("filter", {})):
                            needs.add(window)
                        _assert_indexed(await _explain(mongo_db, command), command, needs)
                        explained += 1
                        if window in str(command.get("filter", {}).get("$and", [])):
                            windowed.add(sort)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            assert explained, name
    assert explained >= len(FILTERS) * len(SORTS) * 2
    assert windowed == set(SORTS)


async def test_review_pages_the_product_page_and_categories_use_indexes(
    mongo_db: AsyncDatabase[dict[str, Any]],
    seeded: str,
    listened: tuple[ProductReadModel, Finds],
) -> None:
    read_model, finds = listened
    assert await read_model.get(seeded) is not None
    for command in finds.take():
        _assert_indexed(await _explain(mongo_db, command), command, {"_id"})
    for sort in ("-created_at", "-rating", "rating"):
        cursor = None
        for _page in range(3):
            page = await read_model.reviews(seeded, sort=sort, limit=20, cursor=cursor)  # type: ignore[arg-type]
            assert page is not None
            cursor = page.next_cursor
        for command in finds.take():
            detail = command["find"].endswith(PRODUCT_DETAIL_COLLECTION)
            needs = {"_id"} if detail else {"product_id", "status"}
            _assert_indexed(await _explain(mongo_db, command), command, needs)
    # The categories: one document per category, so a scan of them is bounded by the
    # number of categories, not by the catalog (DocumentDB's planner scans a collection
    # that small rather than walk an index); their read is by _id order.
    await mongo_db[CATEGORIES_COLLECTION].insert_many(
        [{"_id": name, "product_count": 1} for name in CATEGORIES]
    )
    assert [doc["_id"] for doc in await read_model.categories()] == CATEGORIES
    (command,) = finds.take()
    assert command["find"] == CATEGORIES_COLLECTION
    assert await mongo_db[CATEGORIES_COLLECTION].count_documents({}) == len(CATEGORIES)
