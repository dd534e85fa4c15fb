"""Settings of the projector process, from the environment (prefix PROJECTOR_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog_contracts.events import EVENTS_TOPIC, REVIEWS_TOPIC


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROJECTOR_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=AliasChoices(
            "PROJECTOR_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    events_topic: str = Field(
        EVENTS_TOPIC, validation_alias=AliasChoices("PROJECTOR_EVENTS_TOPIC", "EVENTS_TOPIC")
    )
    reviews_topic: str = Field(
        REVIEWS_TOPIC, validation_alias=AliasChoices("PROJECTOR_REVIEWS_TOPIC", "REVIEWS_TOPIC")
    )
    group_id: str = "catalog-projector"
    mongodb_url: str = Field(
        "mongodb://127.0.0.1:17017/",
        validation_alias=AliasChoices("PROJECTOR_MONGODB_URL", "MONGODB_URL"),
    )
    mongodb_database: str = Field(
        "catalog", validation_alias=AliasChoices("PROJECTOR_MONGODB_DATABASE", "MONGODB_DATABASE")
    )
    # An operation on the read model that gets no answer within this time fails and its batch
    # is retried: a network that silently drops packets must not hang the projector forever.
    mongodb_timeout_ms: int = Field(30_000, ge=1_000)
    batch_size: int = Field(1000, ge=1, le=10_000)
    # How often marked categories get fresh figures: their staleness bound, and the cost of a
    # steady trickle of events (one aggregation per category per refresh, not per batch).
    category_refresh_seconds: float = Field(1.0, gt=0, le=60)
    # The largest share of the time refreshes may take: after a refresh that took T seconds the
    # next waits at least T * (1 - share) / share, so a store slowed by large categories (the
    # refresh aggregates every active product of each marked one) is not kept busy with
    # refreshes while batches wait.
    category_refresh_share: float = Field(0.25, gt=0, le=1)
    # How many partitions' batches are applied at the same time (each one's events in order).
    partition_concurrency: int = Field(6, ge=1, le=64)
    # Static group membership: a projector restarted with the same id within the session
    # timeout gets its partitions back without a rebalance of the group. Unique per process
    # (the pod's name on Kubernetes); unset, membership is dynamic.
    group_instance_id: str | None = None
    session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000)
    host: str = "127.0.0.1"
    metrics_port: int = Field(18012, ge=0, le=65535)

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the projector consumes (products, then reviews)."""
        return (self.events_topic, self.reviews_topic)
