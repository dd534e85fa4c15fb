"""The Review aggregate's invariants, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from command_service.domain.errors import InvalidValue, ReviewAlreadyRemoved
from command_service.domain.review import BODY_MAX, TITLE_MAX, Review

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_review(**overrides: Any) -> Review:
    fields: dict[str, Any] = {
        "review_id": uuid4(),
        "product_id": uuid4(),
        "rating": 4,
        "title": "Solid",
        "body": None,
        "author": "ada",
        "now": NOW,
    }
    fields.update(overrides)
    review, _ = Review.submit(**fields)
    return review


def test_submit_records_review_submitted_at_version_1() -> None:
    product_id = uuid4()
    review, event = Review.submit(
        review_id=uuid4(),
        product_id=product_id,
        rating=5,
        title="Great",
        body="Really.",
        author="ada",
        now=NOW,
    )
    assert (review.version, review.status, review.created_at) == (1, "published", NOW)
    assert event.event_type == "ReviewSubmitted"
    assert event.data.model_dump() == {
        "product_id": product_id,
        "rating": 5,
        "title": "Great",
        "body": "Really.",
        "author": "ada",
    }
    state = review.to_state()
    assert (state.product_id, state.rating, state.status, state.version) == (
        product_id,
        5,
        "published",
        1,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rating", 0),
        ("rating", 6),
        ("rating", True),
        ("rating", 4.0),
        ("rating", "4"),
        ("title", ""),
        ("title", "  "),
        ("title", "t" * (TITLE_MAX + 1)),
        ("title", "nul\x00"),
        ("body", "b" * (BODY_MAX + 1)),
        ("body", "lone \ud800 surrogate"),
        ("author", ""),
        ("author", "a" * 201),
    ],
)
def test_invalid_fields_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(InvalidValue) as raised:
        new_review(**{field: value})
    assert raised.value.field == field


def test_remove_records_review_removed_once() -> None:
    review = new_review()
    removed, event = review.remove(reason="spam", now=NOW + timedelta(seconds=1))
    assert (removed.status, removed.version) == ("removed", 2)
    assert event.event_type == "ReviewRemoved"
    assert event.data.model_dump() == {"reason": "spam"}
    with pytest.raises(ReviewAlreadyRemoved):
        removed.remove(reason=None, now=NOW)
    assert review.status == "published"  # the original is untouched


def test_updated_at_never_goes_back() -> None:
    review = new_review()
    removed, _ = review.remove(reason=None, now=NOW - timedelta(hours=1))
    assert removed.updated_at == NOW


@given(
    st.integers(min_value=-10, max_value=10),
    st.text(max_size=TITLE_MAX + 5),
    st.one_of(st.none(), st.text(max_size=50)),
)
def test_a_submitted_review_always_holds_the_invariants(
    rating: int, title: str, body: str | None
) -> None:
    try:
        review = new_review(rating=rating, title=title, body=body)
    except InvalidValue:
        return
    assert 1 <= review.rating <= 5
    assert 1 <= len(review.title) <= TITLE_MAX
    assert review.title.strip()
    assert review.status == "published"
    assert review.version == 1


@given(st.lists(st.booleans(), max_size=10))
def test_versions_strictly_increase_and_removal_is_final(attempts: list[bool]) -> None:
    review = new_review()
    versions = [review.version]
    for _ in attempts:
        try:
            review, _event = review.remove(reason=None, now=NOW)
        except ReviewAlreadyRemoved:
            assert review.status == "removed"
            continue
        versions.append(review.version)
    assert versions == sorted(set(versions))
    assert len(versions) <= 2
