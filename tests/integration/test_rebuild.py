"""One read model rebuilt alone against real Kafka and MongoDB, while the live projector keeps
applying new events: only its collections move, and every read model then equals a projection
of everything from scratch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    GENERATION_COLLECTIONS,
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    Generation,
    generation_named,
    pointer_document,
)
from catalog_read_models.generations import (
    PointerMoved,
    live_generation,
    read_pointer,
    switch_pointer,
)
from catalog_read_models.rebuild import (
    REBUILD_LOCK_ID,
    LineProgress,
    RebuildError,
    RebuildLock,
    rebuild,
)
from catalog_read_models.registry import registry
from tests.fixtures.events import ProductHistory, ReviewHistory
from tests.fixtures.infra import Infra
from tests.integration.test_projector import (
    Db,
    projected_from_scratch,
    publish,
    reviews_topic,
    running_projector,
    strip,
    wait_for,
    wire,
)

pytestmark = pytest.mark.integration

__all__ = ["reviews_topic"]  # a fixture of this module too

LIVE = [name for name in GENERATION_COLLECTIONS if name != "products"]


def damage(
    read_model: str, histories: list[ProductHistory]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the rebuild of `read_model` must repair: one of its documents the late writes do
    not touch, damaged in place (filter, update)."""
    if read_model == CATEGORIES_COLLECTION:
        return {"_id": "cat1"}, {"$set": {"total_stock": -1}}
    field = "name" if read_model == PRODUCT_LIST_COLLECTION else "description"
    return {"_id": str(histories[4].state.id)}, {"$set": {field: "damaged"}}


@pytest.mark.parametrize(
    "read_model", [PRODUCT_LIST_COLLECTION, PRODUCT_DETAIL_COLLECTION, CATEGORIES_COLLECTION]
)
async def test_one_read_model_is_rebuilt_alone_while_writes_continue(
    infra: Infra, topic: str, reviews_topic: str, mongo_db: Db, read_model: str
) -> None:
    histories = [ProductHistory(category=f"cat{i % 3}", price=f"{i + 1}.00") for i in range(24)]
    for i, history in enumerate(histories):
        history.adjust(-(i % 4))
    reviews = [
        ReviewHistory(h.state.id, rating=1 + i % 5, author=f"a{i}")
        for i, h in enumerate(histories)
        if i % 3 == 0
    ]
    await publish(infra, topic, [wire(e) for h in histories for e in h.events])
    await publish(infra, reviews_topic, [wire(e) for r in reviews for e in r.events])
    # Written while the rebuild runs: on a product of its own category, and reviews of a
    # product whose documents the rebuild replays.
    late = [ProductHistory(category="cat0", price="3.00") for _ in range(4)]
    late_reviews = [
        ReviewHistory(histories[1].state.id, rating=2, author=f"late{i}") for i in range(4)
    ]
    products, all_reviews = len(histories) + len(late), len(reviews) + len(late_reviews)

    async def converged(expected_products: int, expected_reviews: int) -> bool:
        generation = await live_generation(mongo_db)()
        categories = mongo_db[generation.collection(CATEGORIES_COLLECTION)]
        return (
            await mongo_db[generation.collection(PRODUCT_LIST_COLLECTION)].count_documents({})
            == await mongo_db[generation.collection(PRODUCT_DETAIL_COLLECTION)].count_documents({})
            == expected_products
            and await mongo_db[generation.collection("reviews")].count_documents({})
            == expected_reviews
            and await categories.count_documents({"product_count": {"$gt": 0}}) == 3
            and await mongo_db[generation.collection("category_members")].count_documents(
                {"d": {"$gt": 0}}
            )
            == 0
        )

    async def keep_writing() -> None:
        for product, review in zip(late, late_reviews, strict=True):
            await asyncio.sleep(0.05)
            await publish(infra, topic, [wire(e) for e in product.events])
            await publish(infra, reviews_topic, [wire(e) for e in review.events])

    # A first generation that is not the base one, so the names show what moved.
    await mongo_db[META_COLLECTION].insert_one(
        {"_id": GENERATION_POINTER_ID, **_pointer(generation_named("g1"))}
    )
    async with running_projector(infra, (topic, reviews_topic), mongo_db):
        await wait_for(lambda: converged(len(histories), len(reviews)))
        before = await live_generation(mongo_db)()
        damaged = await mongo_db[before.collection(read_model)].update_one(
            *damage(read_model, histories)
        )
        assert damaged.modified_count == 1
        lines: list[str] = []
        writer = asyncio.create_task(keep_writing())
        report = await rebuild(
            mongo_db,
            infra.kafka_bootstrap_servers,
            (topic, reviews_topic),
            read_model=read_model,
            progress=LineProgress(lines.append),
            grace_seconds=0.5,
        )
        await writer
        await wait_for(lambda: converged(products, all_reviews))
        await asyncio.sleep(1.5)  # the live projector's last category refresh
        after = await live_generation(mongo_db)()
        live = {
            name: strip(await mongo_db[after.collection(name)].find({}).to_list()) for name in LIVE
        }

    # Only this read model's collections moved; the pointer says where they come from.
    assert (report.old, report.new) == (before, after)
    assert after.name == "g1"
    assert dict(after.models) == {read_model: report.new.generation_of(read_model)}
    (model,) = [each for each in registry() if each.name == read_model]
    for name in LIVE:
        moved = after.collection(name) != before.collection(name)
        assert moved == (name in model.collections), name
    names = set(await mongo_db.list_collection_names())
    assert before.collection(read_model) not in names
    assert after.collection(read_model) in names
    assert lines[-1].startswith(f"rebuilt {read_model}: g1 -> g")
    if read_model != CATEGORIES_COLLECTION:
        assert report.events >= sum(len(h.events) for h in histories)
        assert any(line.startswith("replay: ") and "(100.0%)" in line for line in lines)
    # Every read model equals a projection of everything from scratch: the damage is gone and
    # the late writes are in.
    expected = await projected_from_scratch(
        mongo_db, [*histories, *late], [*reviews, *late_reviews], {"cat0", "cat1", "cat2"}
    )
    for name in LIVE:
        assert live[name] == expected[name], name


def _pointer(generation: Generation) -> dict[str, Any]:
    document = pointer_document(generation)
    del document["_id"]
    return document


async def test_a_switch_from_a_pointer_that_moved_changes_nothing(mongo_db: Db) -> None:
    assert await read_pointer(mongo_db) is None
    await switch_pointer(mongo_db, None, generation_named("g1"))
    with pytest.raises(PointerMoved):
        await switch_pointer(mongo_db, None, generation_named("g2"))
    first = await read_pointer(mongo_db)
    assert first is not None
    assert first["rev"] == 1
    await switch_pointer(mongo_db, first, generation_named("g3"))
    with pytest.raises(PointerMoved):
        await switch_pointer(mongo_db, first, generation_named("g4"))
    assert (await live_generation(mongo_db)()).name == "g3"
    # A pointer written before it had a revision.
    meta = mongo_db[META_COLLECTION]
    await meta.replace_one({"_id": GENERATION_POINTER_ID}, _pointer(generation_named("g5")))
    legacy = await read_pointer(mongo_db)
    await switch_pointer(mongo_db, legacy, generation_named("g6"))
    with pytest.raises(PointerMoved):
        await switch_pointer(mongo_db, legacy, generation_named("g7"))
    assert (await live_generation(mongo_db)()).name == "g6"


async def test_one_rebuild_at_a_time(mongo_db: Db) -> None:
    async with RebuildLock(mongo_db, "product_list"):
        with pytest.raises(RebuildError, match=r"^another rebuild is running \(product_list, "):
            await rebuild(mongo_db, "127.0.0.1:1", ("t",), read_model="categories")
    assert await mongo_db[META_COLLECTION].find_one({"_id": REBUILD_LOCK_ID}) is None
    # A lock whose holder died (its lease ran out) is taken over.
    dead = {"_id": REBUILD_LOCK_ID, "owner": "gone", "what": "x", "expires": time.time() - 1}
    await mongo_db[META_COLLECTION].insert_one(dead)
    async with RebuildLock(mongo_db, "categories") as taken:
        held = await mongo_db[META_COLLECTION].find_one({"_id": REBUILD_LOCK_ID})
        assert held is not None
        assert (held["owner"], held["what"]) == (taken.owner, "categories")
    assert await mongo_db[META_COLLECTION].count_documents({}) == 0
