"""HTTP response bodies of the query API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from catalog_contracts.read_models import LATEST_REVIEWS

Average = Annotated[
    str | None,
    Field(
        description="Mean of the published ratings, a decimal string with two places; null "
        "without reviews",
        examples=["4.33"],
    ),
]
Stars = Annotated[int, Field(ge=1, le=5)]


class ProductSummary(BaseModel):
    id: UUID
    name: str
    price: str
    in_stock: bool
    category: str
    rating_average: Average
    rating_count: int = Field(ge=0, description="Published reviews")


class ProductPage(BaseModel):
    items: list[ProductSummary]
    next_cursor: str | None


class RatingDistribution(BaseModel):
    """Published reviews per number of stars."""

    one: int = Field(alias="1", ge=0)
    two: int = Field(alias="2", ge=0)
    three: int = Field(alias="3", ge=0)
    four: int = Field(alias="4", ge=0)
    five: int = Field(alias="5", ge=0)


class Rating(BaseModel):
    count: int = Field(ge=0, description="Published reviews")
    average: Average
    distribution: RatingDistribution


class LatestReview(BaseModel):
    id: UUID
    rating: Stars
    title: str
    author: str
    created_at: datetime


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
    rating: Rating
    latest_reviews: list[LatestReview] = Field(
        description=f"The newest published reviews (at most {LATEST_REVIEWS}), newest first"
    )


class Review(BaseModel):
    id: UUID
    rating: Stars
    title: str
    body: str | None
    author: str
    created_at: datetime


class ReviewPage(BaseModel):
    items: list[Review]
    next_cursor: str | None


class CategoryStats(BaseModel):
    category: str
    product_count: int
    in_stock_count: int
    total_stock: int
    min_price: str
    max_price: str
