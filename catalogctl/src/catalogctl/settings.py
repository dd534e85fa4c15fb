"""Where catalogctl finds the system: the environment, else the stack's `stack.env`.

`make up` writes `.run/stack.env`; `STACK_ENV` names another one (a test stack's, say). A
variable set in the environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog_contracts.events import EVENTS_TOPIC, REVIEWS_TOPIC
from service_runtime.tokens import AUDIENCE, DEV_ISSUER, KEY_FILE


def stack_env_file() -> Path:
    """The stack.env catalogctl reads."""
    return Path(os.environ.get("STACK_ENV", ".run/stack.env"))


class CatalogSettings(BaseSettings):
    """What catalogctl reads; every field is optional until a subcommand needs it."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = None
    mongodb_url: str | None = None
    mongodb_database: str = "catalog"
    kafka_bootstrap_servers: str | None = None
    events_topic: str = EVENTS_TOPIC
    reviews_topic: str = REVIEWS_TOPIC
    stack_dir: Path | None = None
    signing_key_file: Path | None = None
    jwt_issuer: str = DEV_ISSUER
    jwt_audience: str = AUDIENCE
    gateway_url: str | None = None
    projector_metrics_url: str | None = None
    projector_group_id: str = "catalog-projector"
    dev_token: str | None = Field(None, repr=False)

    @classmethod
    def load(cls) -> CatalogSettings:
        """From the environment and the stack's stack.env (when there is one)."""
        env_file = stack_env_file()
        return cls(_env_file=env_file if env_file.is_file() else None)

    @property
    def topics(self) -> tuple[str, str]:
        """The events topics (products, reviews)."""
        return (self.events_topic, self.reviews_topic)

    def key_file(self) -> Path:
        """The development signing key: SIGNING_KEY_FILE, else the stack's own."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        return (self.stack_dir or Path(".run")) / "keys" / KEY_FILE

    def require(self, *names: str) -> None:
        """Raise a one-line error when any of the settings `names` is missing."""
        missing = [name.upper() for name in names if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} not set: run `make up` (it writes .run/stack.env), "
                "set STACK_ENV to a stack.env, or export them"
            )
