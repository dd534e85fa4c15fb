"""The `product_list` read model: only what a product list shows, with its rating figures."""

from __future__ import annotations

from typing import Any

from pymongo import IndexModel

from catalog_contracts.events import ProductState
from catalog_contracts.read_models import (
    PRODUCT_LIST_COLLECTION,
    list_index,
    name_key,
    product_document,
)
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

# A list is read in windows of its sort key (query_service.windows) through one of these
# indexes: one per sort key, with and without the category in front. Status, in_stock, a price
# range and `q` are checked on what the index finds in a window (see `list_index` on why status
# is not in them). Indexes of earlier releases that led with status (`status_*`) are no longer
# read; `catalogctl rebuild` makes a generation without them.
INDEX_NAMES = {
    "name_key": "name_key",
    "price_cents": "price",
    "updated_at": "updated_at",
    "rating_sort": "rating",
}
INDEXES = [
    IndexModel(
        list_index(key, by_category=by_category),
        name="_".join(["list", *(["category"] if by_category else []), short]),
    )
    for key, short in INDEX_NAMES.items()
    for by_category in (False, True)
]


def list_fields(state: ProductState) -> dict[str, Any]:
    """The product fields of a list item (the version is the guard's)."""
    document = product_document(state)
    return {**{name: document[name] for name in LIST_FIELDS}, "name_key": name_key(state.name)}


def list_rating(figures: Figures) -> dict[str, Any]:
    """The rating fields of a list item."""
    return {
        "rating_average": figures.average,
        "rating_count": figures.count,
        "rating_sort": figures.sort,
    }


READ_MODEL = ProductDocuments(PRODUCT_LIST_COLLECTION, list_fields, list_rating, INDEXES)
