"""HTTP response bodies of the query API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel


class ProductSummary(BaseModel):
    id: UUID
    name: str
    price: str
    in_stock: bool
    category: str


class ProductPage(BaseModel):
    items: list[ProductSummary]
    next_cursor: str | None


class ProductDetail(BaseModel):
    id: UUID
    name: str
    description: str | None
    category: str
    price: str
    stock: int
    in_stock: bool
    status: Literal["active", "discontinued"]
    version: int
    created_at: datetime
    updated_at: datetime


class CategoryStats(BaseModel):
    category: str
    product_count: int
    in_stock_count: int
    total_stock: int
    min_price: str
    max_price: str
