"""Settings of the query service, from the environment (prefix QUERY_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class QuerySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUERY_", extra="ignore", frozen=True)

    mongodb_url: str = Field(
        "mongodb://127.0.0.1:17017/",
        validation_alias=AliasChoices("QUERY_MONGODB_URL", "MONGODB_URL"),
    )
    mongodb_database: str = Field(
        "catalog", validation_alias=AliasChoices("QUERY_MONGODB_DATABASE", "MONGODB_DATABASE")
    )
    host: str = "127.0.0.1"
    port: int = Field(18002, ge=1, le=65535)
    min_version_wait_seconds: float = Field(3.0, gt=0, le=30)
    # A waiting read re-reads its document after 10 ms, then 25% later each time, up to every
    # 100 ms: a lagging projector is not made slower still by a storm of re-reads.
    min_version_poll_seconds: float = Field(0.01, gt=0, le=1)
    min_version_poll_max_seconds: float = Field(0.1, gt=0, le=5)
    max_pool_size: int = Field(50, ge=1)
    # Every read-model operation ends within this time (PyMongo's timeoutMS: the server is
    # told with maxTimeMS, and the client stops waiting); past it the answer is a 503. A read
    # nobody waits for any more must not keep the store busy, nor a silent link hang a request.
    mongodb_timeout_ms: int = Field(5_000, ge=100, le=60_000)
    # How stale this replica's view of the live read-model generation may be after a rebuild.
    generation_refresh_seconds: float = Field(1.0, gt=0, le=60)
