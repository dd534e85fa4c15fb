"""Shared fixtures: the real servers (tests/fixtures/infra.py) and per-test resources, the spans
our code ends (tests/fixtures/tracing.py)."""

from tests.fixtures.infra import infra
from tests.fixtures.resources import database_url, mongo_db, pg_pool, topic
from tests.fixtures.tracing import spans

__all__ = ["database_url", "infra", "mongo_db", "pg_pool", "spans", "topic"]
