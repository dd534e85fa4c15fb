"""HTTP request and response bodies of the command API."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from catalog_contracts.money import Price
from command_service.domain.model import (
    CATEGORY_MAX,
    DESCRIPTION_MAX,
    NAME_MAX,
    REASON_MAX,
    STOCK_LIMIT,
)
from command_service.domain.review import BODY_MAX, RATING_MAX, RATING_MIN, TITLE_MAX

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=r"\S")]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
Category = Annotated[str, Field(min_length=1, max_length=CATEGORY_MAX, pattern=r"\S")]
Reason = Annotated[str, Field(max_length=REASON_MAX)]
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX, pattern=r"\S")]
ReviewBody = Annotated[str, Field(max_length=BODY_MAX)]


def _whole_number(value: object) -> object:
    # JSON Schema counts 5.0 as an integer; strings and booleans are not numbers at all.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


class Body(BaseModel):
    """Request bodies reject unknown fields."""

    model_config = ConfigDict(extra="forbid")


class CreateProductRequest(Body):
    name: Name
    description: Description | None = None
    category: Category
    price: Price
    stock: Annotated[int, Field(ge=0, le=STOCK_LIMIT), BeforeValidator(_whole_number)]


class UpdateDetailsRequest(Body):
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None

    @field_validator("name", "category", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateDetailsRequest:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, description, category")
        return self


class ChangePriceRequest(Body):
    price: Price


class AdjustStockRequest(Body):
    quantity_change: Annotated[
        int, Field(ge=-STOCK_LIMIT, le=STOCK_LIMIT), BeforeValidator(_whole_number)
    ]
    reason: Reason | None = None


class DiscontinueRequest(Body):
    reason: Reason | None = None


class SubmitReviewRequest(Body):
    rating: Annotated[int, Field(ge=RATING_MIN, le=RATING_MAX), BeforeValidator(_whole_number)]
    title: Title
    body: ReviewBody | None = None


class RemoveReviewRequest(Body):
    reason: Reason | None = None


class CommandAccepted(BaseModel):
    id: UUID
    version: int


class StockAdjusted(CommandAccepted):
    stock: int


class ReviewAccepted(BaseModel):
    id: UUID
    product_id: UUID
    version: int
