"""The query side's read-model queries against a real MongoDB wire-protocol server.

The read documents are seeded directly, built from the contracts as the projector builds them,
so these tests hold whatever state the projector is in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import ReviewState
from catalog_contracts.read_models import (
    BASE_GENERATION,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    REVIEWS_COLLECTION,
    Generation,
    generation_named,
    pointer_document,
    review_document,
)
from catalog_read_models.projection import Projection
from catalog_read_models.store import open_store
from query_service.ports import Page
from query_service.read_models import REVIEW_SORTS, SORTS, ProductFilter, ProductReadModel
from tests.fixtures.events import T0, ProductHistory
from tests.fixtures.fake_read_model import product_documents

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]


def review(product_id: UUID, n: int, rating: int, *, status: str = "published") -> ReviewState:
    """Review `n` of a product; reviews 2k and 2k+1 share their time, so times tie too."""
    created = T0 + timedelta(seconds=n // 2)
    return ReviewState(
        id=uuid4(),
        product_id=product_id,
        rating=rating,
        title=f"Review {n}",
        body=None if n % 3 else f"Body {n}",
        author=f"author-{n}",
        status=status,
        created_at=created,
        updated_at=created,
        version=1 if status == "published" else 2,
    )


def product_reviews(i: int, product_id: UUID) -> list[ReviewState]:
    """Item i's reviews: none for every fourth item, else ratings that tie across items."""
    if i % 4 == 0:
        return []
    ratings = [1 + i % 5, 5] if i % 2 else [1 + i % 5]
    # A removed review never counts: it would lift every average it were part of.
    return [review(product_id, n, r) for n, r in enumerate(ratings)] + [
        review(product_id, len(ratings), 5, status="removed")
    ]


async def seed(db: Db, generation: Generation = BASE_GENERATION) -> list[ProductHistory]:
    """Products with reviews in `generation`, over the read models' indexes (the query side
    reads windows through them)."""

    async def fixed() -> Generation:
        return generation

    await Projection(db, await open_store(db), fixed).ensure_indexes()
    histories = [
        ProductHistory(
            name=f"Item {i:02d}",
            category="even" if i % 2 == 0 else "odd",
            price=f"{i}.50",
            stock=i % 3,
        )
        for i in range(25)
    ]
    reviews = [
        review_document(r) for i, h in enumerate(histories) for r in product_reviews(i, h.state.id)
    ]
    documents = [product_documents(h.state, reviews) for h in histories]
    await db[generation.collection(PRODUCT_LIST_COLLECTION)].insert_many([d[0] for d in documents])
    await db[generation.collection(PRODUCT_DETAIL_COLLECTION)].insert_many(
        [d[1] for d in documents]
    )
    await db[generation.collection(REVIEWS_COLLECTION)].insert_many(reviews)
    return histories


async def every_page(read: Any, limit: int) -> list[dict[str, Any]]:
    """Every item of the pages `read(cursor)` gives, following the cursors to the end."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page: Page = await read(cursor)
        assert len(page.items) <= limit
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return seen


def in_order(documents: list[dict[str, Any]], field: str, direction: int) -> list[str]:
    """The ids of `documents` by `field` in `direction`, ties by id ascending."""
    by_id = sorted(documents, key=lambda d: d["_id"])
    by_id.sort(key=lambda d: d[field], reverse=direction == DESCENDING)
    return [d["_id"] for d in by_id]


async def test_filters_are_literal_and_combine(mongo_db: Db) -> None:
    await seed(mongo_db)
    model = ProductReadModel(mongo_db)
    page = await model.list_products(
        ProductFilter(category="even", in_stock=True, min_price_cents=450, max_price_cents=2050),
        sort="price",
        limit=50,
        cursor=None,
    )
    names = [d["name"] for d in page.items]
    assert names == [
        f"Item {i:02d}"
        for i in range(25)
        if i % 2 == 0 and i % 3 != 0 and 450 <= i * 100 + 50 <= 2050
    ]
    nothing = await model.list_products(
        ProductFilter(category='{"$ne": null}'), sort="name", limit=50, cursor=None
    )
    assert nothing.items == []


async def test_cursor_pages_neither_repeat_nor_skip(mongo_db: Db) -> None:
    await seed(mongo_db)
    model = ProductReadModel(mongo_db)
    listed = await mongo_db[PRODUCT_LIST_COLLECTION].find({}).to_list()
    for sort, order in SORTS.items():

        async def read(cursor: str | None, sort: Any = sort) -> Page:
            return await model.list_products(ProductFilter(), sort=sort, limit=7, cursor=cursor)

        seen = [d["_id"] for d in await every_page(read, 7)]
        assert seen == in_order(listed, order.field, order.direction), sort


async def test_rating_order_puts_every_rated_product_first_ties_by_id(mongo_db: Db) -> None:
    histories = await seed(mongo_db)
    model = ProductReadModel(mongo_db)

    async def read(cursor: str | None) -> Page:
        return await model.list_products(ProductFilter(), sort="-rating", limit=4, cursor=cursor)

    items = await every_page(read, 4)
    assert len(items) == len(histories)
    figures = [(d["rating_sort"], d["_id"]) for d in items]
    assert figures == sorted(figures, key=lambda f: (-f[0], f[1]))
    rated = [d for d in items if d["rating_count"] > 0]
    assert items[: len(rated)] == rated
    assert all(d["rating_average"] is None for d in items[len(rated) :])
    # The seed holds ties among the rated and several unrated products, or this proves little.
    assert len({d["rating_sort"] for d in rated}) < len(rated)
    assert len(items) - len(rated) > 1
    # Item 1 has a 2 and a 5 published (and a removed 5): 3.50.
    [item_1] = [d for d in items if d["name"] == "Item 01"]
    assert (item_1["rating_average"], item_1["rating_count"]) == ("3.50", 2)


async def test_detail_carries_the_rating_and_the_latest_reviews(mongo_db: Db) -> None:
    histories = await seed(mongo_db)
    detail = await ProductReadModel(mongo_db).get(str(histories[1].state.id))
    assert detail is not None
    assert detail["rating"] == {
        "count": 2,
        "average": "3.50",
        "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1},
    }
    # The removed review is newer than both, yet not among them.
    assert sorted(r["title"] for r in detail["latest_reviews"]) == ["Review 0", "Review 1"]


async def test_reviews_in_every_order_published_only(mongo_db: Db) -> None:
    histories = await seed(mongo_db)
    product_id = histories[0].state.id
    other = histories[1].state.id
    # Item 0 has no reviews from the seed; these tie on time (pairs) and on rating.
    ratings = [4, 2, 4, 5, 1, 4, 5, 2, 4, 3, 5, 4]
    mine = [review(product_id, n, r) for n, r in enumerate(ratings)]
    removed = [review(product_id, 20 + n, 3, status="removed") for n in range(3)]
    theirs = [review(other, 30, 1)]
    documents = [review_document(r) for r in [*mine, *removed, *theirs]]
    await mongo_db[REVIEWS_COLLECTION].insert_many(documents)
    published = documents[: len(mine)]
    model = ProductReadModel(mongo_db)
    for sort, order in REVIEW_SORTS.items():
        for limit in (1, 5, 12):

            async def read(cursor: str | None, sort: Any = sort, limit: int = limit) -> Page:
                page = await model.reviews(str(product_id), sort=sort, limit=limit, cursor=cursor)
                assert page is not None
                return page

            seen = await every_page(read, limit)
            assert [d["_id"] for d in seen] == in_order(published, order.field, order.direction)
    page = await model.reviews(str(product_id), sort="rating", limit=1, cursor=None)
    assert page is not None
    assert set(page.items[0]) == {"_id", "rating", "title", "body", "author", "created_at"}


async def test_reviews_of_a_product_without_a_detail_document_are_none(mongo_db: Db) -> None:
    await seed(mongo_db)
    early = review(uuid4(), 0, 5)
    await mongo_db[REVIEWS_COLLECTION].insert_one(review_document(early))
    model = ProductReadModel(mongo_db)
    assert (
        await model.reviews(str(early.product_id), sort="-created_at", limit=5, cursor=None) is None
    )
    assert await model.get(str(early.product_id)) is None


async def test_reads_follow_the_live_generation(mongo_db: Db) -> None:
    stale = await seed(mongo_db)
    generation = generation_named("g2")
    live = await seed(mongo_db, generation)
    await mongo_db[META_COLLECTION].insert_one(pointer_document(generation))
    model = ProductReadModel(mongo_db, refresh_seconds=0.01)
    page = await model.list_products(ProductFilter(), sort="-rating", limit=50, cursor=None)
    assert {d["_id"] for d in page.items} == {str(h.state.id) for h in live}
    assert await model.get(str(stale[0].state.id)) is None
    assert await model.get(str(live[0].state.id)) is not None
    reviews = await model.reviews(str(live[1].state.id), sort="rating", limit=5, cursor=None)
    assert reviews is not None
    assert [d["rating"] for d in reviews.items] == [2, 5]


async def test_q_matches_name_case_insensitively(mongo_db: Db) -> None:
    await seed(mongo_db)
    page = await ProductReadModel(mongo_db).list_products(
        ProductFilter(q="item 1"), sort="name", limit=50, cursor=None
    )
    assert [d["name"] for d in page.items] == [f"Item {i}" for i in range(10, 20)]


async def test_get_many_reads_the_documents_that_exist_in_one_query(mongo_db: Db) -> None:
    histories = await seed(mongo_db)
    model = ProductReadModel(mongo_db)
    wanted = [str(h.state.id) for h in histories[:5]]
    found = await model.get_many([*wanted, str(uuid4()), wanted[0]])
    assert sorted(found) == sorted(wanted)
    assert all(found[key]["_id"] == key for key in wanted)
    assert await model.get_many([]) == {}


async def test_a_list_without_its_indexes_still_answers(mongo_db: Db) -> None:
    """Lists name their index in a hint; a generation whose indexes were never made (a store
    restored without them) answers without the hint rather than with a 503."""
    listed, _ = product_documents(ProductHistory(name="Lone").state)
    await mongo_db[PRODUCT_LIST_COLLECTION].insert_one(listed)
    page = await ProductReadModel(mongo_db).list_products(
        ProductFilter(), sort="price", limit=5, cursor=None
    )
    assert [d["name"] for d in page.items] == ["Lone"]
