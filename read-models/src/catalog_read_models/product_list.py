"""The `product_list` read model: only what a product list shows, with its rating figures."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from catalog_contracts.events import ProductState
from catalog_contracts.read_models import PRODUCT_LIST_COLLECTION, product_document
from catalog_read_models.product_documents import ProductDocuments
from catalog_read_models.ratings import Figures

LIST_FIELDS = (
    "name",
    "description",
    "category",
    "price",
    "price_cents",
    "in_stock",
    "status",
    "updated_at",
)

INDEXES = [
    IndexModel(
        [("status", ASCENDING), ("category", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)],
        name="status_category_name",
    ),
    IndexModel(
        [("status", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)], name="status_name"
    ),
    IndexModel(
        [("status", ASCENDING), ("price_cents", ASCENDING), ("_id", ASCENDING)], name="status_price"
    ),
    IndexModel(
        [("status", ASCENDING), ("updated_at", DESCENDING), ("_id", ASCENDING)],
        name="status_updated_at",
    ),
    IndexModel(
        [("status", ASCENDING), ("rating_sort", DESCENDING), ("_id", ASCENDING)],
        name="status_rating",
    ),
]


def list_fields(state: ProductState) -> dict[str, Any]:
    """The product fields of a list item (the version is the guard's)."""
    document = product_document(state)
    return {name: document[name] for name in LIST_FIELDS}


def list_rating(figures: Figures) -> dict[str, Any]:
    """The rating fields of a list item."""
    return {
        "rating_average": figures.average,
        "rating_count": figures.count,
        "rating_sort": figures.sort,
    }


READ_MODEL = ProductDocuments(PRODUCT_LIST_COLLECTION, list_fields, list_rating, INDEXES)
