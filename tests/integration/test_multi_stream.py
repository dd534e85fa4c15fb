"""Products and reviews arrive on two topics with no order between them: whatever the order,
duplication or concurrency, both product documents end with exactly the figures of the
published reviews."""

from __future__ import annotations

import asyncio
import random
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


async def test_category_staleness_counts_from_the_oldest_change_not_folded(mongo_db: Db) -> None:
    projection = await Projection.open(mongo_db)
    assert await projection.categories_staleness() == 0.0
    first = ProductHistory(category="old")
    await projection.apply(first.events)
    await asyncio.sleep(0.3)
    await projection.apply(ProductHistory(category="new").events)
    # A later change of the first product keeps the clock of its first change.
    await projection.apply([first.adjust(1)])
    assert await projection.categories_staleness() >= 0.3
    assert await projection.refresh_categories() == 2
    assert await projection.categories_staleness() == 0.0
    old = await mongo_db["categories"].find_one({"_id": "old"})
    assert old is not None
    assert (old["product_count"], old["total_stock"]) == (1, 6)


async def aggregated(db: Db) -> dict[str, dict[str, Any]]:
    """Each category's figures computed from scratch over the active product documents."""
    figures: dict[str, dict[str, Any]] = {}
    async for doc in db[PRODUCT_DETAIL_COLLECTION].find({"status": "active"}):
        row = figures.setdefault(
            doc["category"],
            {"product_count": 0, "in_stock_count": 0, "total_stock": 0, "prices": []},
        )
        row["product_count"] += 1
        row["in_stock_count"] += doc["stock"] > 0
        row["total_stock"] += doc["stock"]
        row["prices"].append(doc["price_cents"])
    return {
        name: {
            **{k: v for k, v in row.items() if k != "prices"},
            "min_price_cents": min(row["prices"]),
            "max_price_cents": max(row["prices"]),
        }
        for name, row in figures.items()
    }


async def stored_figures(db: Db) -> dict[str, dict[str, Any]]:
    keys = ("product_count", "in_stock_count", "total_stock", "min_price_cents", "max_price_cents")
    return {
        doc["_id"]: {k: doc[k] for k in keys}
        async for doc in db["categories"].find({"product_count": {"$gt": 0}})
    }


async def test_changes_racing_folds_are_folded_exactly_once(mongo_db: Db) -> None:
    """Four appliers (two of them the same partition's events again, as a rebalance's
    overlap does) move, reprice, restock and discontinue products while two folds run beside
    them: once folded to the end, every category's figures are what its active products add
    up to. A change folded twice, or lost between a fold's read and its write, shows."""
    rng = random.Random(23)
    products = [
        ProductHistory(category=f"c{i % 5}", price=f"{rng.randint(1, 900)}.00", stock=i % 3)
        for i in range(60)
    ]
    for product in products:
        for _ in range(8):
            step = rng.random()
            if step < 0.3:
                product.move(f"c{rng.randrange(5)}")
            elif step < 0.6:
                product.reprice(f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}")
            elif step < 0.95:
                product.adjust(rng.choice([-1, 1, 2]) if product.state.stock else 3)
        if rng.random() < 0.2:
            product.discontinue()
    projection = await Projection.open(mongo_db)
    stream = [event for product in products for event in product.events]
    rng.shuffle(stream)
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    done = asyncio.Event()

    async def apply(chunks: list[list[CatalogEvent]]) -> None:
        for chunk in chunks:
            await projection.apply(chunk)
            await asyncio.sleep(0)

    async def folds() -> None:
        while not done.is_set():
            await projection.refresh_categories()
            await asyncio.sleep(0.005)

    folders = [asyncio.create_task(folds()) for _ in range(2)]
    await asyncio.gather(
        apply(chunks[0::2]), apply(chunks[1::2]), apply(chunks[::-1][0::2]), apply(chunks[1::3])
    )
    done.set()
    await asyncio.gather(*folders)
    while await projection.refresh_categories():
        pass
    expected = await aggregated(mongo_db)
    assert len(expected) >= 4
    assert await stored_figures(mongo_db) == expected
    assert await projection.categories_staleness() == 0.0


async def test_a_removed_extreme_is_looked_up_among_the_rest(mongo_db: Db) -> None:
    """The cheapest and the dearest product leave (one discontinued, one moved away) and the
    next ones take their place, found through the folded-price index; a category whose last
    product leaves shows no figures."""
    projection = await Projection.open(mongo_db)
    products = [ProductHistory(category="lamps", price=f"{10 + i}.00") for i in range(200)]
    await projection.apply([e for p in products for e in p.events])
    await projection.refresh_categories()
    await projection.apply([products[0].discontinue(), products[-1].move("other")])
    await projection.refresh_categories()
    lamps = (await stored_figures(mongo_db))["lamps"]
    assert lamps == {
        "product_count": 198,
        "in_stock_count": 198,
        "total_stock": 990,
        "min_price_cents": 1100,
        "max_price_cents": 20800,
    }
    lone = ProductHistory(category="alone")
    await projection.apply(lone.events)
    await projection.refresh_categories()
    await projection.apply([lone.discontinue()])
    await projection.refresh_categories()
    assert "alone" not in await stored_figures(mongo_db)
    assert await stored_figures(mongo_db) == await aggregated(mongo_db)


async def test_figures_written_before_the_ledger_are_adopted(mongo_db: Db) -> None:
    """A generation whose figures were set before the ledger existed: the projector's start
    gives it members as folded as the figures, so the next change is folded once, not the
    whole category again."""
    projection = await Projection.open(mongo_db)
    products = [ProductHistory(category="legacy", price=f"{5 + i}.00") for i in range(5)]
    await projection.apply([e for p in products for e in p.events])
    await projection.refresh_categories()
    generation = await projection.generation()
    await mongo_db.drop_collection(generation.collection("category_members"))
    await projection.ensure_indexes()  # what the projector does at start
    assert await projection.categories_staleness() == 0.0
    await projection.apply([products[0].adjust(10)])
    assert await projection.refresh_categories() == 1
    assert await stored_figures(mongo_db) == await aggregated(mongo_db)
    assert (await stored_figures(mongo_db))["legacy"]["total_stock"] == 35
