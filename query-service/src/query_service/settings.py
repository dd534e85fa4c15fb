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
    # The pause between the rounds of the process's one `min_version` reader. One read per
    # round serves every waiting request, so the store's load does not grow with the waiters
    # and the pause can stay short enough to add little to a read-your-writes answer.
    min_version_poll_seconds: float = Field(0.02, gt=0, le=1)
    max_pool_size: int = Field(50, ge=1)
    # Every read-model operation ends within this time (PyMongo's timeoutMS: the server is
    # told with maxTimeMS, and the client stops waiting); past it the answer is a 503. A read
    # nobody waits for any more must not keep the store busy, nor a silent link hang a request.
    mongodb_timeout_ms: int = Field(5_000, ge=100, le=60_000)
    # How stale this replica's view of the live read-model generation may be after a rebuild.
    generation_refresh_seconds: float = Field(1.0, gt=0, le=60)
