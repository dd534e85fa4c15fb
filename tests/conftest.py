"""Shared fixtures: the real servers (tests/fixtures/infra.py) and per-test resources."""

from tests.fixtures.infra import infra
from tests.fixtures.resources import database_url, mongo_db, pg_pool, topic

__all__ = ["database_url", "infra", "mongo_db", "pg_pool", "topic"]
