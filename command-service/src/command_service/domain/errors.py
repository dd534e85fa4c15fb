"""Domain and application errors; they know nothing of HTTP (the API maps them at the edge)."""

from __future__ import annotations

from uuid import UUID


class DomainError(Exception):
    """Base of every expected error of the command side."""


class InvalidValue(DomainError):
    """A command field whose value breaks an invariant."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


class ProductNotFound(DomainError):
    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"product {product_id} does not exist")
        self.product_id = product_id


class ProductDiscontinued(DomainError):
    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"product {product_id} is discontinued and can no longer change")
        self.product_id = product_id


class InsufficientStock(DomainError):
    def __init__(self, product_id: UUID, *, available: int, requested: int) -> None:
        super().__init__(
            f"product {product_id} has {available} in stock, {requested} were requested"
        )
        self.product_id = product_id
        self.available = available
        self.requested = requested


class StockLimitExceeded(DomainError):
    def __init__(self, product_id: UUID, *, limit: int) -> None:
        super().__init__(f"product {product_id} stock would exceed {limit}")
        self.product_id = product_id
        self.limit = limit


class VersionMismatch(DomainError):
    """If-Match named a version other than the current one."""

    def __init__(
        self, aggregate_id: UUID, *, expected: int, actual: int, kind: str = "product"
    ) -> None:
        super().__init__(f"{kind} {aggregate_id} is at version {actual}, not {expected}")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class IdempotencyKeyReused(DomainError):
    """The Idempotency-Key was first used with a different request body."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request")
        self.key = key


class IdempotencyKeyInFlight(DomainError):
    """A request with the same Idempotency-Key is still being processed."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with Idempotency-Key {key!r} is still in progress")
        self.key = key


class ReviewNotFound(DomainError):
    def __init__(self, review_id: UUID) -> None:
        super().__init__(f"review {review_id} does not exist")
        self.review_id = review_id


class ReviewAlreadyRemoved(DomainError):
    def __init__(self, review_id: UUID) -> None:
        super().__init__(f"review {review_id} was already removed")
        self.review_id = review_id


class DuplicateReview(DomainError):
    """The author already has a published review of this product."""

    def __init__(self, product_id: UUID, author: str, existing: UUID) -> None:
        super().__init__(f"{author!r} already has a published review of product {product_id}")
        self.product_id = product_id
        self.author = author
        self.existing = existing
