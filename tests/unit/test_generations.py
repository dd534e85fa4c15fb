"""The generation pointer: which collections readers use, per read model, whatever wrote it."""

from __future__ import annotations

import pytest

from catalog_contracts.read_models import (
    BASE_GENERATION,
    CATEGORIES_COLLECTION,
    GENERATION_COLLECTIONS,
    GENERATION_POINTER_ID,
    PRODUCT_DETAIL_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    PRODUCTS_COLLECTION,
    RATINGS_COLLECTION,
    REVIEWS_COLLECTION,
    generation_from_pointer,
    generation_named,
    pointer_document,
)
from catalog_read_models.rebuild import LineProgress, RebuildError, rebuildable


def test_no_pointer_is_the_base_generation() -> None:
    generation = generation_from_pointer(None)
    assert generation == BASE_GENERATION
    assert generation.collection(PRODUCT_LIST_COLLECTION) == "product_list"
    assert (generation.label, generation.generation_of("product_list")) == ("base", "base")


def test_a_pointer_without_a_collection_map_still_reads() -> None:
    # Written before generations named their collections in a map.
    old = {"_id": GENERATION_POINTER_ID, "name": "g1", "products": "p_g1", "categories": "c_g1"}
    generation = generation_from_pointer(old)
    assert generation.collection(PRODUCTS_COLLECTION) == "p_g1"
    assert generation.collection(CATEGORIES_COLLECTION) == "c_g1"
    assert generation.collection(PRODUCT_DETAIL_COLLECTION) == "product_detail_g1"
    assert generation.models == {}


def test_a_pointer_without_a_model_map_reads_as_one_generation() -> None:
    written = pointer_document(generation_named("g1"))
    assert "models" not in written
    generation = generation_from_pointer(written)
    assert generation == generation_named("g1")
    assert generation.collection(REVIEWS_COLLECTION) == "reviews_g1"
    assert generation.generation_of("reviews") == "g1"


def test_one_read_model_rebuilt_alone_resolves_to_its_own_generation() -> None:
    live = generation_named("g1").with_read_model("product_list", [PRODUCT_LIST_COLLECTION], "g2")
    generation = generation_from_pointer({**pointer_document(live), "rev": 3})
    assert generation == live
    assert generation.collection(PRODUCT_LIST_COLLECTION) == "product_list_g2"
    for logical in set(GENERATION_COLLECTIONS) - {PRODUCT_LIST_COLLECTION}:
        assert generation.collection(logical) == f"{logical}_g1"
    assert generation.generation_of("product_list") == "g2"
    assert generation.generation_of("product_detail") == "g1"
    assert generation.label == "g1 (product_list: g2)"

    # A second read model alone keeps the first; a full rebuild forgets both.
    both = generation.with_read_model("categories", [CATEGORIES_COLLECTION], "g3")
    assert both.collection(PRODUCT_LIST_COLLECTION) == "product_list_g2"
    assert both.collection(CATEGORIES_COLLECTION) == "categories_g3"
    assert dict(both.models) == {"product_list": "g2", "categories": "g3"}
    assert generation_from_pointer(pointer_document(generation_named("g4"))).models == {}


def test_a_read_model_rebuilt_alone_from_older_pointers_keeps_the_others_where_they_are() -> None:
    base = BASE_GENERATION.with_read_model(
        "reviews", [REVIEWS_COLLECTION, RATINGS_COLLECTION], "g2"
    )
    assert base.collection(PRODUCT_DETAIL_COLLECTION) == "product_detail"
    assert base.collection(RATINGS_COLLECTION) == "product_ratings_g2"
    old = generation_from_pointer({"name": "g1", "products": "p_g1", "categories": "c_g1"})
    moved = old.with_read_model("product_detail", [PRODUCT_DETAIL_COLLECTION], "g2")
    assert moved.collection(PRODUCTS_COLLECTION) == "p_g1"
    assert moved.collection(CATEGORIES_COLLECTION) == "c_g1"
    assert moved.collection(PRODUCT_LIST_COLLECTION) == "product_list_g1"
    assert moved.collection(PRODUCT_DETAIL_COLLECTION) == "product_detail_g2"
    assert set(moved.collections) == set(GENERATION_COLLECTIONS)


def test_which_read_models_can_be_rebuilt_alone() -> None:
    assert rebuildable(None) is None
    for name in ("product_list", "product_detail", "categories"):
        model = rebuildable(name)
        assert model is not None
        assert model.name == name
    with pytest.raises(RebuildError, match=r"^reviews cannot be rebuilt alone: .*tally"):
        rebuildable("reviews")
    with pytest.raises(RebuildError) as unknown:
        rebuildable("products")
    assert str(unknown.value) == (
        "no read model 'products': give one of reviews, product_list, product_detail,"
        " categories (or none for all)"
    )


def test_line_progress_tells_each_phase_at_its_end() -> None:
    lines: list[str] = []
    progress = LineProgress(lines.append, every_seconds=3600)
    progress.phase("replay", 3000, "messages")
    progress.advance(1000)
    progress.advance(2500)  # past the target: counted up to it
    progress.advance(10)
    progress.phase("catch-up", 0, "messages")
    progress.note("switched")
    assert lines == [
        "replay: 3,000 / 3,000 messages (100.0%)",
        "catch-up: 0 / 0 messages (100.0%)",
        "switched",
    ]
