"""Products and reviews arrive on two topics with no order between them: whatever the order,
duplication or concurrency, both product documents end with exactly the figures of the
published reviews."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from catalog_contracts.events import CatalogEvent, format_timestamp
from catalog_contracts.read_models import (
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    REVIEWS_COLLECTION,
    ProductDetailDocument,
    ProductListDocument,
    ReviewDocument,
)
from catalog_read_models import categories
from catalog_read_models.projection import Projection
from tests.fixtures.events import T0, ProductHistory, ReviewHistory

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]


def expected_rating(reviews: list[ReviewHistory]) -> dict[str, Any]:
    """The figures computed directly from the final review states."""
    published = [r.state for r in reviews if r.state.status == "published"]
    distribution = {str(stars): 0 for stars in range(1, 6)}
    for state in published:
        distribution[str(state.rating)] += 1
    average = None
    if published:
        mean = Decimal(sum(s.rating for s in published)) / Decimal(len(published))
        average = str(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    newest = sorted(published, key=lambda s: (s.created_at, str(s.id)), reverse=True)[:5]
    latest = [
        {
            "id": str(s.id),
            "rating": s.rating,
            "title": s.title,
            "author": s.author,
            "created_at": format_timestamp(s.created_at),
        }
        for s in newest
    ]
    return {
        "count": len(published),
        "average": average,
        "distribution": distribution,
        "latest": latest,
    }


async def assert_ratings(db: Db, product: ProductHistory, reviews: list[ReviewHistory]) -> None:
    want = expected_rating(reviews)
    key = str(product.state.id)
    listed = await db[PRODUCT_LIST_COLLECTION].find_one({"_id": key})
    detail = await db[PRODUCT_DETAIL_COLLECTION].find_one({"_id": key})
    assert listed is not None
    assert detail is not None
    ProductListDocument.model_validate(listed)
    ProductDetailDocument.model_validate(detail)
    assert listed["version"] == detail["version"] == product.state.version
    assert (listed["rating_count"], listed["rating_average"]) == (want["count"], want["average"])
    sort = -1 if want["average"] is None else int(Decimal(want["average"]) * 100)
    assert listed["rating_sort"] == sort
    assert detail["rating"] == {
        "count": want["count"],
        "average": want["average"],
        "distribution": want["distribution"],
    }
    assert detail["latest_reviews"] == want["latest"]
    assert detail["stock"] == product.state.stock
    for review in reviews:
        stored = await db[REVIEWS_COLLECTION].find_one({"_id": str(review.state.id)})
        assert stored is not None
        assert ReviewDocument.model_validate(stored).status == review.state.status
        assert stored["version"] == review.state.version


def catalog(
    seed: int, products: int = 3, reviews: int = 9
) -> list[tuple[ProductHistory, list[ReviewHistory]]]:
    """Products with changes and reviews (some removed, some newer than others)."""
    rng = random.Random(seed)
    out = []
    for p in range(products):
        product = ProductHistory(name=f"p{p}", stock=5)
        product.adjust(2)
        product.reprice("19.99")
        histories = []
        for r in range(reviews):
            review = ReviewHistory(
                product.state.id,
                rating=rng.randint(1, 5),
                author=f"a{r}",
                title=f"t{r}",
                # Two reviews share a timestamp: ties go by id.
                created_at=T0 + timedelta(minutes=r - (r == 3)),
            )
            if rng.random() < 0.3:
                review.remove()
            histories.append(review)
        out.append((product, histories))
    return out


def events_of(data: list[tuple[ProductHistory, list[ReviewHistory]]]) -> list[CatalogEvent]:
    return [e for p, rs in data for e in [*p.events, *(e for r in rs for e in r.events)]]


async def apply_in_batches(
    projection: Projection, events: list[CatalogEvent], rng: random.Random
) -> None:
    i = 0
    while i < len(events):
        size = rng.randint(1, 7)
        await projection.apply(events[i : i + size])
        i += size


async def check(db: Db, data: list[tuple[ProductHistory, list[ReviewHistory]]]) -> None:
    for product, reviews in data:
        await assert_ratings(db, product, reviews)


async def test_reviews_before_their_product_are_not_lost(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    await projection.ensure_indexes()
    data = catalog(1)
    reviews = [e for _, rs in data for r in rs for e in r.events]
    products = [e for p, _ in data for e in p.events]
    await apply_in_batches(projection, reviews, random.Random(1))
    assert await mongo_db[PRODUCT_DETAIL_COLLECTION].count_documents({}) == 0
    await apply_in_batches(projection, products, random.Random(2))
    await check(mongo_db, data)


async def test_interleaved_and_shuffled_streams_converge(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    for seed in range(3):
        data = catalog(10 + seed)
        events = events_of(data)
        random.Random(seed).shuffle(events)
        await apply_in_batches(projection, events, random.Random(seed))
        await check(mongo_db, data)


async def test_duplicates_and_redelivery_change_nothing(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    data = catalog(20)
    events = events_of(data)
    rng = random.Random(5)
    noisy = events + rng.sample(events, len(events))
    rng.shuffle(noisy)
    await apply_in_batches(projection, noisy, rng)
    await check(mongo_db, data)
    snapshot = {
        name: await mongo_db[name].find({}).sort("_id").to_list()
        for name in (PRODUCT_LIST_COLLECTION, PRODUCT_DETAIL_COLLECTION, REVIEWS_COLLECTION)
    }
    # A redelivery of the whole history, in another order.
    rng.shuffle(events)
    result = await projection.apply(events)
    assert not result.applied
    for name, before in snapshot.items():
        assert await mongo_db[name].find({}).sort("_id").to_list() == before


async def test_a_removal_before_its_submission_keeps_the_review_out(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    product = ProductHistory()
    kept = ReviewHistory(product.state.id, rating=2, author="k")
    removed = ReviewHistory(product.state.id, rating=5, author="r")
    removed.remove()
    await projection.apply([removed.events[1]])
    await projection.apply([product.events[0]])
    await projection.apply([kept.events[0], removed.events[0]])
    await assert_ratings(mongo_db, product, [kept, removed])
    detail = await mongo_db[PRODUCT_DETAIL_COLLECTION].find_one({"_id": str(product.state.id)})
    assert detail is not None
    assert detail["rating"]["average"] == "2.00"


async def test_two_concurrent_appliers_of_one_products_events(mongo_db: Db) -> None:
    first = await Projection.open(mongo_db)
    second = await Projection.open(mongo_db)
    data = catalog(30, products=2, reviews=20)
    events = events_of(data)
    rng = random.Random(9)
    # Both see every event (a rebalance hands a partition over mid-batch), in their own orders.
    one, two = rng.sample(events, len(events)), rng.sample(events, len(events))
    await asyncio.gather(
        apply_in_batches(first, one, random.Random(1)),
        apply_in_batches(second, two, random.Random(2)),
    )
    await check(mongo_db, data)


async def test_average_rounds_half_up(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    product = ProductHistory()
    # 5 + 4 + 4 + 4 + 4 + 4 + 4 + 4 = 33 over 8 = 4.125 -> "4.13"
    ratings = [5, 4, 4, 4, 4, 4, 4, 4]
    reviews = [
        ReviewHistory(product.state.id, rating=r, author=f"a{i}", created_at=T0 + timedelta(i))
        for i, r in enumerate(ratings)
    ]
    await projection.apply([e for r in reviews for e in r.events] + product.events)
    await assert_ratings(mongo_db, product, reviews)
    listed = await mongo_db[PRODUCT_LIST_COLLECTION].find_one({"_id": str(product.state.id)})
    assert listed is not None
    assert (listed["rating_average"], listed["rating_sort"]) == ("4.13", 413)


async def test_category_staleness_counts_from_the_oldest_unrefreshed_mark(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    assert await projection.categories_staleness() == 0.0
    await projection.apply(ProductHistory(category="old").events)
    await asyncio.sleep(0.3)
    await projection.apply(ProductHistory(category="new").events)
    assert await projection.categories_staleness() >= 0.3
    assert await projection.refresh_categories() == 2
    assert await projection.categories_staleness() == 0.0
    old = await mongo_db["categories"].find_one({"_id": "old"})
    assert old is not None
    assert old["product_count"] == 1


async def test_marks_racing_the_refresh_are_never_lost(mongo_db: Db) -> None:
    """A product joins a marked category while a refresh of it runs: once refreshed to the
    end, the category counts it. A store whose conditional replace is not atomic with the
    mark (a refresh that read the category before the mark and wrote after it) would drop the
    mark, and the category would stay one short for good. Each round races a fresh category,
    with the mark a little later each time."""
    projection = await Projection.open(mongo_db)
    generation = await projection.generation()
    products = mongo_db[PRODUCT_DETAIL_COLLECTION]
    document = {"status": "active", "stock": 1, "price_cents": 100}

    async def join(name: str, product: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await products.insert_one({"_id": product, "category": name, **document})
        await categories.mark(mongo_db, generation, [name])

    rounds = 200
    for i in range(rounds):
        await join(f"c{i}", f"{i}-first", 0)
        await asyncio.gather(
            projection.refresh_categories(), join(f"c{i}", f"{i}-second", i % 7 / 1000)
        )
    while await projection.refresh_categories():
        pass
    counts = Counter(
        {doc["_id"]: doc["product_count"] async for doc in mongo_db["categories"].find({})}
    )
    assert counts == Counter({f"c{i}": 2 for i in range(rounds)})


async def test_marks_of_batches_applied_side_by_side_are_written_together(mongo_db: Db) -> None:
    """Six batches marking at once: each category they name is bumped once for all of them
    (one round), new ones are created, and each batch returns only once its marks are in."""
    projection = await Projection.open(mongo_db)
    generation = await projection.generation()
    collection = mongo_db[generation.collection("categories")]
    marks = categories.CategoryMarks()
    await marks.mark(collection, ["shared", "old"])
    before = {doc["_id"]: doc["_seq"] async for doc in collection.find({})}

    async def batch(n: int) -> set[str]:
        await marks.mark(collection, ["shared", f"own-{n}"])
        return {doc["_id"] async for doc in collection.find({"_dirty": True})}

    seen = await asyncio.gather(*(batch(n) for n in range(6)))
    after = {doc["_id"]: doc["_seq"] async for doc in collection.find({})}
    assert after["shared"] == before["shared"] + 1
    assert after["old"] == before["old"]
    assert {name for name in after if name.startswith("own-")} == {f"own-{n}" for n in range(6)}
    assert all({"shared", f"own-{n}"} <= dirty for n, dirty in enumerate(seen))
    await marks.mark(collection, ["shared"])  # a later batch: a round of its own
    assert (await collection.find_one({"_id": "shared"}) or {})["_seq"] == before["shared"] + 2
