"""Settings of the command service and its relay, from the environment (prefix COMMAND_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, PostgresDsn, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog_contracts.events import EVENTS_TOPIC, REVIEWS_TOPIC
from service_runtime.tokens import MAX_LEEWAY


class CommandSettings(BaseSettings):
    """Everything the command-service and relay processes read from their environment."""

    model_config = SettingsConfigDict(env_prefix="COMMAND_", extra="ignore", frozen=True)

    environment: str = Field(
        "development", validation_alias=AliasChoices("COMMAND_ENVIRONMENT", "ENVIRONMENT")
    )
    database_url: PostgresDsn = Field(
        PostgresDsn("postgresql://catalog:catalog@127.0.0.1:15432/catalog"),
        validation_alias=AliasChoices("COMMAND_DATABASE_URL", "DATABASE_URL"),
    )
    # Least privilege: the relay and the migrations may connect as roles of their own (the
    # relay's reads, marks and purges the outbox; the migrator owns the schema). Unset, both
    # use database_url.
    relay_database_url: PostgresDsn | None = None
    migrate_database_url: PostgresDsn | None = None
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=AliasChoices("COMMAND_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    events_topic: str = Field(
        EVENTS_TOPIC, validation_alias=AliasChoices("COMMAND_EVENTS_TOPIC", "EVENTS_TOPIC")
    )
    reviews_topic: str = Field(
        REVIEWS_TOPIC, validation_alias=AliasChoices("COMMAND_REVIEWS_TOPIC", "REVIEWS_TOPIC")
    )
    # Both events topics get this many: the same key lands on the same partition number in each.
    topic_partitions: int = Field(6, ge=1)
    topic_min_compaction_lag_ms: int = Field(7 * 24 * 3600 * 1000, ge=0)

    # Bearer tokens: commands need one once a JWKS is configured (a file, or an identity
    # provider's URL); without either the command API accepts anonymous commands (development).
    jwks_file: Path | None = None
    jwks_url: str | None = None
    jwt_issuer: str = "catalog-dev"
    jwt_audience: str = "catalog-api"
    jwt_leeway_seconds: float = Field(30, ge=0, le=MAX_LEEWAY)

    host: str = "127.0.0.1"
    port: int = Field(18001, ge=1, le=65535)
    pool_min_size: int = Field(2, ge=1)
    pool_max_size: int = Field(20, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1)
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=1)

    relay_batch_size: int = Field(500, ge=1, le=10_000)
    relay_poll_interval_seconds: float = Field(1.0, gt=0)
    relay_use_notify: bool = True
    relay_lock_retry_seconds: float = Field(1.0, gt=0)
    # How often a relay re-counts the running relays and takes or gives back shards.
    relay_rebalance_interval_seconds: float = Field(1.0, gt=0)
    relay_metrics_port: int = Field(18011, ge=0, le=65535)
    outbox_retention_seconds: int = Field(24 * 3600, ge=0)
    outbox_purge_interval_seconds: float = Field(60.0, gt=0)

    @property
    def dsn(self) -> str:
        """The command service's database URL."""
        return str(self.database_url)

    @property
    def relay_dsn(self) -> str:
        """The relay's database URL."""
        return str(self.relay_database_url or self.database_url)

    @property
    def migrate_dsn(self) -> str:
        """The URL `command-service migrate` connects with (the schema owner's)."""
        return str(self.migrate_database_url or self.database_url)

    @property
    def topics(self) -> dict[str, str]:
        """Each aggregate type's events topic."""
        return {"product": self.events_topic, "review": self.reviews_topic}

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> CommandSettings:
        if self.environment != "development":
            for url in (self.database_url, self.relay_database_url, self.migrate_database_url):
                if url is not None and url.hosts()[0].get("password") == "catalog":
                    raise ValueError(
                        "the development database password is refused outside development"
                    )
        return self
