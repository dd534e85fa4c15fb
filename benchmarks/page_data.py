"""The product page stage's pure parts: the seeded data, the single model's SQL and its body.

Kept free of servers so the unit tests can check that both models are seeded with the same
reviews and that the single model answers what the query service answers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from catalog_contracts.events import ProductState, ReviewState, format_timestamp
from catalog_contracts.read_models import LATEST_REVIEWS
from catalog_read_models import product_detail, product_list
from catalog_read_models.ratings import figures, tally_entry

# The name prefix of the seeded products: what the clean-up finds them by.
SEEDED = "seeded page "
MAX_REVIEWS = 50
# Every twentieth review is removed: the single model must filter them, as the tally does.
REMOVED_EVERY = 20
# The seeded reviews are spread over the year before the seeding.
SPREAD = timedelta(days=365)
# The tally's revision the seeded documents start at (one write made the whole tally).
SEED_REV = 1

PRODUCT_COLUMNS = (
    "id", "name", "description", "category", "price", "stock",
    "status", "version", "created_at", "updated_at",
)  # fmt: skip
REVIEW_COLUMNS = (
    "id", "product_id", "rating", "title", "body", "author",
    "status", "version", "created_at", "updated_at",
)  # fmt: skip


def review_count(rng: random.Random) -> int:
    """Reviews of one product: uniform over 0..50, so a quarter of the pages show few."""
    return rng.randint(0, MAX_REVIEWS)


@dataclass(frozen=True, slots=True)
class SeededProduct:
    """One product and every review of it, as both models hold them."""

    state: ProductState
    reviews: list[ReviewState]

    def product_row(self) -> tuple[Any, ...]:
        """The `products` row, in PRODUCT_COLUMNS order (the columns are the state's fields)."""
        return tuple(getattr(self.state, column) for column in PRODUCT_COLUMNS)

    def review_rows(self) -> list[tuple[Any, ...]]:
        """The `reviews` rows, in REVIEW_COLUMNS order."""
        return [tuple(getattr(r, column) for column in REVIEW_COLUMNS) for r in self.reviews]

    def tally(self) -> dict[str, Any]:
        """The projector's tally document of these reviews."""
        entries = {str(r.id): tally_entry(r) for r in self.reviews}
        return {"_id": str(self.state.id), "rev": SEED_REV, "reviews": entries}

    def documents(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The `product_detail` and `product_list` documents, made by the projector's code."""
        rated = figures(self.tally()["reviews"])
        return (
            product_detail.READ_MODEL.document(self.state, rated, SEED_REV),
            product_list.READ_MODEL.document(self.state, rated, SEED_REV),
        )


def seeded_product(n: int, category: str, rng: random.Random, now: datetime) -> SeededProduct:
    """Product number `n` of the seeding, with its reviews (unique authors, some removed)."""
    product_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    state = ProductState(
        id=product_id,
        name=f"{SEEDED}{n}",
        description=None,
        category=category,
        price=Decimal(rng.randrange(100, 100_000)) / 100,
        stock=rng.choice((0, 1, 5, 20)),
        status="active",
        created_at=now - SPREAD,
        updated_at=now,
        version=1,
    )
    reviews = []
    for i in range(review_count(rng)):
        created = now - timedelta(microseconds=rng.randrange(int(SPREAD.total_seconds() * 1e6)))
        removed = rng.randrange(REMOVED_EVERY) == 0
        reviews.append(
            ReviewState(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                product_id=product_id,
                rating=rng.choice((1, 2, 3, 4, 4, 5, 5, 5)),
                title=f"seeded review {i}",
                body=None,
                author=f"seed-{i}",
                status="removed" if removed else "published",
                created_at=created,
                updated_at=created,
                version=2 if removed else 1,
            )
        )
    return SeededProduct(state, reviews)


STARS = "12345"

# One round trip, as a service on the write model would run it: the row, the aggregate of its
# published reviews and the newest five (by reviews_product_created_idx), lateral subqueries.
PAGE_SQL = f"""
    SELECT p.id::text AS id, p.name, p.description, p.category, p.price::text AS price,
           p.stock, p.status, p.version, p.created_at, p.updated_at,
           agg.review_count, agg.average::text AS average,
           {", ".join(f"agg.stars_{s}" for s in STARS)},
           newest.latest::text AS latest
      FROM products p
     CROSS JOIN LATERAL (
           SELECT count(*) AS review_count, round(avg(r.rating), 2) AS average,
                  {", ".join(f"count(*) FILTER (WHERE r.rating = {s}) AS stars_{s}" for s in STARS)}
             FROM reviews r
            WHERE r.product_id = p.id AND r.status = 'published'
           ) agg
     CROSS JOIN LATERAL (
           SELECT coalesce(json_agg(json_build_object(
                      'id', n.id::text, 'rating', n.rating, 'title', n.title,
                      'author', n.author,
                      'created_at', to_char(n.created_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                  ) ORDER BY n.created_at DESC, n.id DESC), '[]') AS latest
             FROM (SELECT id, rating, title, author, created_at
                     FROM reviews
                    WHERE product_id = p.id AND status = 'published'
                    ORDER BY created_at DESC, id DESC
                    LIMIT {LATEST_REVIEWS}) n
           ) newest
     WHERE p.id = $1
"""


def page_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """The single model's product page from PAGE_SQL's row: the query service's response."""
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "category": row["category"],
        "price": row["price"],
        "stock": row["stock"],
        "in_stock": row["stock"] > 0,
        "status": row["status"],
        "version": row["version"],
        "created_at": format_timestamp(row["created_at"]),
        "updated_at": format_timestamp(row["updated_at"]),
        "rating": {
            "count": row["review_count"],
            "average": row["average"],
            "distribution": {s: row[f"stars_{s}"] for s in STARS},
        },
        "latest_reviews": orjson.loads(row["latest"]),
    }
