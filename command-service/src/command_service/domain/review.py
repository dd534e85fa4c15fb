"""The Review aggregate: a customer's rating and words about one product.

Pure, like `Product`: a review is immutable and every change returns the new review and the
event it produced. The rules that span aggregates (the product must exist and be active, one
published review per author and product) are the handlers', which see both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from catalog_contracts.events import (
    ReviewRemovedData,
    ReviewState,
    ReviewStatus,
    ReviewSubmittedData,
)
from command_service.domain.errors import InvalidValue, ReviewAlreadyRemoved
from command_service.domain.model import PendingEvent, validate_reason, validate_text

RATING_MIN = 1
RATING_MAX = 5
TITLE_MAX = 200
BODY_MAX = 5000
AUTHOR_MAX = 200


def validate_rating(value: Any) -> int:
    # bool is an int to Python, never a rating.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue("rating", "must be an integer")
    if not RATING_MIN <= value <= RATING_MAX:
        raise InvalidValue("rating", f"must be between {RATING_MIN} and {RATING_MAX}")
    return value


def validate_title(value: str) -> str:
    if not 1 <= len(value) <= TITLE_MAX or not value.strip():
        raise InvalidValue("title", f"must be 1 to {TITLE_MAX} characters and not blank")
    return validate_text("title", value)


def validate_body(value: str | None) -> str | None:
    if value is not None and len(value) > BODY_MAX:
        raise InvalidValue("body", f"must be at most {BODY_MAX} characters")
    return None if value is None else validate_text("body", value)


def validate_author(value: str) -> str:
    if not 1 <= len(value) <= AUTHOR_MAX or not value.strip():
        raise InvalidValue("author", f"must be 1 to {AUTHOR_MAX} characters and not blank")
    return validate_text("author", value)


@dataclass(frozen=True, slots=True)
class Review:
    """A review as the write model knows it."""

    id: UUID
    product_id: UUID
    rating: int
    title: str
    body: str | None
    author: str
    status: ReviewStatus
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def submit(
        cls,
        *,
        review_id: UUID,
        product_id: UUID,
        rating: Any,
        title: str,
        body: str | None,
        author: str,
        now: datetime,
    ) -> tuple[Review, PendingEvent]:
        """A new published review at version 1."""
        review = cls(
            id=review_id,
            product_id=product_id,
            rating=validate_rating(rating),
            title=validate_title(title),
            body=validate_body(body),
            author=validate_author(author),
            status="published",
            version=1,
            created_at=now,
            updated_at=now,
        )
        data = ReviewSubmittedData(
            product_id=product_id,
            rating=review.rating,
            title=review.title,
            body=review.body,
            author=review.author,
        )
        return review, PendingEvent("ReviewSubmitted", data)

    def remove(self, *, reason: str | None, now: datetime) -> tuple[Review, PendingEvent]:
        """Take the review down (moderation); it no longer counts in the product's rating."""
        if self.status == "removed":
            raise ReviewAlreadyRemoved(self.id)
        reason = validate_reason(reason)
        review = replace(
            self,
            status="removed",
            version=self.version + 1,
            # Clocks can step back; updated_at never does.
            updated_at=max(now, self.updated_at),
        )
        return review, PendingEvent("ReviewRemoved", ReviewRemovedData(reason=reason))

    def to_state(self) -> ReviewState:
        """The contract view of this review, as events carry it."""
        return ReviewState(
            id=self.id,
            product_id=self.product_id,
            rating=self.rating,
            title=self.title,
            body=self.body,
            author=self.author,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            version=self.version,
        )
