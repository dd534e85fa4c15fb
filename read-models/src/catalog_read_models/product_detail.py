"""The `product_detail` read model: everything the product page shows, reviews included."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from catalog_contracts.events import ProductState
from catalog_contracts.read_models import PRODUCT_DETAIL_COLLECTION, product_document
from catalog_read_models.product_documents import ProductDocuments
from catalog_read_models.ratings import Figures

INDEXES = [
    # The category figures are summed from the active detail documents (they carry the stock).
    IndexModel(
        [("category", ASCENDING), ("status", ASCENDING), ("price_cents", ASCENDING)],
        name="category_status_price",
    ),
]


def detail_fields(state: ProductState) -> dict[str, Any]:
    """The product fields of the page (the version is the guard's)."""
    document = product_document(state)
    del document["_id"], document["version"]
    return document


def detail_rating(figures: Figures) -> dict[str, Any]:
    """The rating and newest reviews of the page."""
    return {
        "rating": {
            "count": figures.count,
            "average": figures.average,
            "distribution": dict(figures.distribution),
        },
        "latest_reviews": [dict(review) for review in figures.latest],
    }


READ_MODEL = ProductDocuments(
    PRODUCT_DETAIL_COLLECTION, detail_fields, detail_rating, INDEXES, counts_events=True
)
