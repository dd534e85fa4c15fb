"""Read-model documents: what the projector writes to MongoDB and the query side reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from catalog_contracts.events import (
    Contract,
    ProductState,
    ProductStatus,
    ReviewState,
    ReviewStatus,
    format_timestamp,
)
from catalog_contracts.money import format_price, price_to_cents

# The single product collection of releases before product_list/product_detail: a generation
# still names it so a rebuild drops it with the rest.
PRODUCTS_COLLECTION = "products"
CATEGORIES_COLLECTION = "categories"
PRODUCT_LIST_COLLECTION = "product_list"
PRODUCT_DETAIL_COLLECTION = "product_detail"
REVIEWS_COLLECTION = "reviews"
# The projector's own per-product tally of reviews, from which both product documents take
# their rating figures; not served.
RATINGS_COLLECTION = "product_ratings"
# The projector's own ledger of what each product adds to its category's figures; not served.
CATEGORY_MEMBERS_COLLECTION = "category_members"
# How many of the newest published reviews the product page shows.
LATEST_REVIEWS = 5


class CategoryDocument(Contract):
    """Aggregated figures of the active products of one category; `_id` is the category."""

    category: str = Field(alias="_id")
    product_count: int
    in_stock_count: int
    total_stock: int
    min_price: str
    max_price: str
    min_price_cents: int
    max_price_cents: int


RatingStars = Literal["1", "2", "3", "4", "5"]


class Rating(Contract):
    """A product's rating: what its published reviews give, exactly."""

    count: int
    # Mean of the published ratings as a decimal string with two places; null without reviews.
    average: str | None
    distribution: dict[RatingStars, int]


class LatestReview(Contract):
    id: str
    rating: int
    title: str
    author: str
    created_at: str


class ProductListDocument(Contract):
    """One product as lists show it (`product_list`); `_id` is the product id as text."""

    id: str = Field(alias="_id")
    name: str
    # Not shown in a list, but `q` searches it.
    description: str | None
    category: str
    price: str
    price_cents: int
    in_stock: bool
    status: ProductStatus
    updated_at: str
    # `name_key(name)`: lists sorted by name are read in windows of it.
    name_key: int
    version: int
    rating_average: str | None
    rating_count: int
    # The average in hundredths, -1 without reviews: `sort=-rating` puts every rated product
    # before the unrated ones, ties by id.
    rating_sort: int
    # The revision of the product's review tally these figures come from (never goes back).
    rating_rev: int


class ProductDetailDocument(Contract):
    """Everything the product page shows (`product_detail`), in one document."""

    id: str = Field(alias="_id")
    name: str
    description: str | None
    category: str
    price: str
    price_cents: int
    stock: int
    in_stock: bool
    status: ProductStatus
    version: int
    created_at: str
    updated_at: str
    rating: Rating
    latest_reviews: list[LatestReview]
    rating_rev: int


class ReviewDocument(Contract):
    """One review (`reviews`), published or removed; `_id` is the review id as text."""

    id: str = Field(alias="_id")
    product_id: str
    rating: int
    title: str
    body: str | None
    author: str
    status: ReviewStatus
    version: int
    created_at: str
    updated_at: str


def product_document(state: ProductState) -> dict[str, Any]:
    """The read document a product state projects to (timestamps as sortable RFC 3339 text)."""
    return {
        "_id": str(state.id),
        "name": state.name,
        "description": state.description,
        "category": state.category,
        "price": format_price(state.price),
        "price_cents": price_to_cents(state.price),
        "stock": state.stock,
        "in_stock": state.stock > 0,
        "status": state.status,
        "version": state.version,
        "created_at": format_timestamp(state.created_at),
        "updated_at": format_timestamp(state.updated_at),
    }


NAME_KEY_BYTES = 7  # 56 bits: an int64 every server indexes


def name_key(name: str) -> int:
    """The first bytes of a name's UTF-8 as a number (a list document's `name_key`).

    Names in byte order (both stores' order of strings) have keys in the same order, so a range
    of keys holds a contiguous run of names sorted by name: a list sorted by name is read in
    windows of keys (query_service.windows).
    """
    return int.from_bytes(name.encode()[:NAME_KEY_BYTES].ljust(NAME_KEY_BYTES, b"\0"), "big")


# The sort keys of a product list, each with its direction: the key fields a list is read in
# windows of (`name` is read through `name_key`).
LIST_SORT_KEYS: dict[str, tuple[str, int]] = {
    "name_key": ("name_key", 1),
    "price_cents": ("price_cents", 1),
    "updated_at": ("updated_at", -1),
    "rating_sort": ("rating_sort", -1),
}


def list_index(key_field: str, *, by_category: bool) -> list[tuple[str, int]]:
    """The key of the `product_list` index a list windowed on `key_field` is read through
    (the category first when the list filters by one). The read model creates these indexes;
    the query side names them in its windowed reads' hints.

    The status every list filters on is not in them: nearly every document is active, and
    DocumentDB's compound indexes do not narrow by a leading key that matches almost
    everything (a category's price window read through (status, category, price) cost 15 ms
    at 100,000 documents, through (category, price) 2.4 ms). The status is checked on the few
    documents a window holds.
    """
    category = [("category", 1)] if by_category else []
    return [*category, LIST_SORT_KEYS[key_field], ("_id", 1)]


def review_document(state: ReviewState) -> dict[str, Any]:
    """The read document a review state projects to."""
    return {
        "_id": str(state.id),
        "product_id": str(state.product_id),
        "rating": state.rating,
        "title": state.title,
        "body": state.body,
        "author": state.author,
        "status": state.status,
        "version": state.version,
        "created_at": format_timestamp(state.created_at),
        "updated_at": format_timestamp(state.updated_at),
    }


# The live generation of read-model collections is named by one pointer document, so a rebuild
# can fill new collections while the old ones serve, then switch every reader with one write.
META_COLLECTION = "read_model_meta"
GENERATION_POINTER_ID = "live_generation"


# Every collection a generation holds, by its logical name.
GENERATION_COLLECTIONS = (
    PRODUCTS_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    REVIEWS_COLLECTION,
    RATINGS_COLLECTION,
    CATEGORIES_COLLECTION,
    CATEGORY_MEMBERS_COLLECTION,
)


@dataclass(frozen=True, slots=True)
class Generation:
    """One set of read-model collections: logical name -> the collection that holds it.

    `collections` is what readers resolve through. A read model rebuilt on its own since the
    generation `name` was written has its collections from another generation: `models` says
    which (read model -> generation name), for operators and for the next rebuild; its
    collections are in `collections` like every other one.
    """

    name: str
    collections: Mapping[str, str]
    models: Mapping[str, str] = field(default_factory=dict)

    def collection(self, logical: str) -> str:
        """The physical name of a read model's collection in this generation."""
        default = logical if self.name == "base" else f"{logical}_{self.name}"
        return self.collections.get(logical, default)

    def generation_of(self, read_model: str) -> str:
        """The name of the generation a read model's collections come from."""
        return self.models.get(read_model, self.name)

    @property
    def label(self) -> str:
        """The generation's name, and the read models rebuilt apart from it."""
        if not self.models:
            return self.name
        apart = ", ".join(f"{model}: {name}" for model, name in sorted(self.models.items()))
        return f"{self.name} ({apart})"

    def with_read_model(self, read_model: str, logical: Iterable[str], name: str) -> Generation:
        """This generation with one read model's collections taken from generation `name`."""
        collections = {each: self.collection(each) for each in GENERATION_COLLECTIONS}
        collections.update({each: f"{each}_{name}" for each in logical})
        return Generation(self.name, collections, {**self.models, read_model: name})


BASE_GENERATION = Generation("base", {name: name for name in GENERATION_COLLECTIONS})


def generation_named(name: str) -> Generation:
    """The collections of a rebuilt generation."""
    return Generation(name, {logical: f"{logical}_{name}" for logical in GENERATION_COLLECTIONS})


def generation_from_pointer(pointer: Mapping[str, Any] | None) -> Generation:
    """The generation a pointer document names (no pointer: the base collections)."""
    if not pointer:
        return BASE_GENERATION
    if "collections" in pointer:
        models = dict(pointer.get("models") or {})
        return Generation(pointer["name"], dict(pointer["collections"]), models)
    # A pointer written before generations named their collections in a map.
    return Generation(
        pointer["name"],
        {PRODUCTS_COLLECTION: pointer["products"], CATEGORIES_COLLECTION: pointer["categories"]},
    )


def pointer_document(generation: Generation) -> dict[str, Any]:
    """The pointer document that makes `generation` the live one."""
    document = {
        "_id": GENERATION_POINTER_ID,
        "name": generation.name,
        "collections": dict(generation.collections),
    }
    if generation.models:
        document["models"] = dict(generation.models)
    return document
