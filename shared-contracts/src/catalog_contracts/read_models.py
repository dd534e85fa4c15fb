"""Read-model documents: what the projector writes to MongoDB and the query side reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from catalog_contracts.events import Contract, ProductState, ProductStatus, format_timestamp
from catalog_contracts.money import format_price, price_to_cents

PRODUCTS_COLLECTION = "products"
CATEGORIES_COLLECTION = "categories"


class ProductDocument(Contract):
    """One product in the `products` collection; `_id` is the product id as text."""

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


# The live generation of read-model collections is named by one pointer document, so a rebuild
# can fill new collections while the old ones serve, then switch every reader with one write.
META_COLLECTION = "read_model_meta"
GENERATION_POINTER_ID = "live_generation"


@dataclass(frozen=True, slots=True)
class Generation:
    """One set of read-model collections."""

    name: str
    products: str
    categories: str


BASE_GENERATION = Generation("base", PRODUCTS_COLLECTION, CATEGORIES_COLLECTION)


def generation_named(name: str) -> Generation:
    """The collections of a rebuilt generation."""
    return Generation(name, f"{PRODUCTS_COLLECTION}_{name}", f"{CATEGORIES_COLLECTION}_{name}")


def generation_from_pointer(pointer: dict[str, Any] | None) -> Generation:
    """The generation a pointer document names (no pointer: the base collections)."""
    if not pointer:
        return BASE_GENERATION
    return Generation(pointer["name"], pointer["products"], pointer["categories"])


def pointer_document(generation: Generation) -> dict[str, Any]:
    return {
        "_id": GENERATION_POINTER_ID,
        "name": generation.name,
        "products": generation.products,
        "categories": generation.categories,
    }
