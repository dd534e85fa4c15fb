"""JSON Schemas generated from the contract models; the committed copies must match these."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from catalog_contracts.events import EVENT_MODELS, CatalogEvent
from catalog_contracts.read_models import (
    CategoryDocument,
    ProductDetailDocument,
    ProductListDocument,
    ReviewDocument,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _with_header(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, "$id": f"urn:catalog-cqrs:schema:{name}", **schema}


def generate_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for the envelope (any event), each event type and read model."""
    schemas: dict[str, dict[str, Any]] = {
        "CatalogEvent.json": _with_header(
            "CatalogEvent", TypeAdapter(CatalogEvent).json_schema(mode="serialization")
        )
    }
    for name, model in EVENT_MODELS.items():
        schemas[f"{name}.json"] = _with_header(name, model.model_json_schema(mode="serialization"))
    for read_model in (
        ProductListDocument,
        ProductDetailDocument,
        ReviewDocument,
        CategoryDocument,
    ):
        schemas[f"read-models/{read_model.__name__}.json"] = _with_header(
            read_model.__name__, read_model.model_json_schema(mode="serialization", by_alias=True)
        )
    return schemas
