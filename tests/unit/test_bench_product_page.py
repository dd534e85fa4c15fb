"""The product page benchmark's seeding and single-model page: both models hold the same data
and the single model answers what the query service serves from `product_detail`."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
import pytest

from benchmarks.page_data import (
    MAX_REVIEWS,
    PAGE_SQL,
    PRODUCT_COLUMNS,
    REVIEW_COLUMNS,
    SEED_REV,
    SEEDED,
    SeededProduct,
    page_body,
    review_count,
    seeded_product,
)
from catalog_contracts.events import format_timestamp
from catalog_contracts.read_models import (
    LATEST_REVIEWS,
    ProductDetailDocument,
    ProductListDocument,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def products(count: int, seed: int = 3) -> list[SeededProduct]:
    rng = random.Random(seed)
    return [seeded_product(n, f"bench-c{n % 20:02d}", rng, NOW) for n in range(count)]


def sql_row(product: SeededProduct) -> dict[str, Any]:
    """What PAGE_SQL returns for this product, computed the way PostgreSQL does."""
    p = product.state
    published = [r for r in product.reviews if r.status == "published"]
    newest = sorted(published, key=lambda r: (r.created_at, str(r.id)), reverse=True)
    average = None
    if published:
        mean = Decimal(sum(r.rating for r in published)) / len(published)
        average = str(mean.quantize(Decimal("0.01"), ROUND_HALF_UP))  # round(numeric, 2)
    latest = [
        {
            "id": str(r.id),
            "rating": r.rating,
            "title": r.title,
            "author": r.author,
            "created_at": format_timestamp(r.created_at),
        }
        for r in newest[:LATEST_REVIEWS]
    ]
    return {
        "id": str(p.id),
        "name": p.name,
        "description": p.description,
        "category": p.category,
        "price": f"{p.price:.2f}",  # numeric(12, 2)::text
        "stock": p.stock,
        "status": p.status,
        "version": p.version,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "review_count": len(published),
        "average": average,
        **{f"stars_{s}": sum(1 for r in published if str(r.rating) == s) for s in "12345"},
        "latest": orjson.dumps(latest).decode(),
    }


def test_the_seeding_is_repeatable_and_names_its_products() -> None:
    first, again = products(30), products(30)
    assert [p.state.id for p in first] == [p.state.id for p in again]
    assert all(p.state.name.startswith(SEEDED) for p in first)
    assert len({p.state.id for p in first}) == 30


def test_review_counts_cover_zero_to_fifty() -> None:
    rng = random.Random(1)
    counts = [review_count(rng) for _ in range(5_000)]
    assert min(counts) == 0
    assert max(counts) == MAX_REVIEWS


def test_reviews_obey_the_write_model_rules() -> None:
    for product in products(50):
        authors = [r.author for r in product.reviews]
        assert len(set(authors)) == len(authors)  # one published review per author and product
        assert all(r.product_id == product.state.id for r in product.reviews)
        assert all(r.created_at <= NOW for r in product.reviews)
    statuses = {r.status for p in products(50) for r in p.reviews}
    assert statuses == {"published", "removed"}


def test_rows_follow_the_copy_columns() -> None:
    product = next(p for p in products(10) if p.reviews)
    row = dict(zip(PRODUCT_COLUMNS, product.product_row(), strict=True))
    assert row["id"] == product.state.id
    assert row["price"] == product.state.price
    review = dict(zip(REVIEW_COLUMNS, product.review_rows()[0], strict=True))
    assert review["product_id"] == product.state.id
    assert review["status"] in ("published", "removed")


def test_documents_validate_and_count_only_published_reviews() -> None:
    for product in products(40):
        detail, listed = product.documents()
        page = ProductDetailDocument.model_validate(detail)
        item = ProductListDocument.model_validate(listed)
        published = [r for r in product.reviews if r.status == "published"]
        assert page.rating.count == item.rating_count == len(published)
        assert page.rating_rev == item.rating_rev == SEED_REV
        assert len(page.latest_reviews) == min(LATEST_REVIEWS, len(published))
        assert product.tally()["_id"] == page.id


def test_the_single_model_page_is_the_query_service_page() -> None:
    checked = 0
    for product in products(60):
        detail, _ = product.documents()
        body = page_body(sql_row(product))
        assert body["id"] == detail["_id"]
        for field in (
            "name", "description", "category", "price", "stock", "in_stock",
            "status", "version", "created_at", "updated_at", "rating", "latest_reviews",
        ):  # fmt: skip
            assert body[field] == detail[field], field
        checked += bool(product.reviews)
    assert checked  # some pages had reviews to compare


@pytest.mark.parametrize(
    "part",
    [
        "WHERE p.id = $1",
        "r.status = 'published'",
        "WHERE product_id = p.id AND status = 'published'",
        "ORDER BY created_at DESC, id DESC",  # reviews_product_created_idx, then the id tie
        f"LIMIT {LATEST_REVIEWS}",
        "round(avg(r.rating), 2)",
        "CROSS JOIN LATERAL",
    ],
)
def test_the_page_is_one_statement_with_lateral_subqueries(part: str) -> None:
    assert part in PAGE_SQL
    assert "$2" not in PAGE_SQL
