"""Where catalogctl finds the system: the environment, else the stack's `stack.env`.

`make up` writes `.run/stack.env`; `STACK_ENV` names another one (a test stack's, say). A
variable set in the environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    stack_dir: Path | None = None
    signing_key_file: Path | None = None
    jwt_issuer: str = DEV_ISSUER
    jwt_audience: str = AUDIENCE
    gateway_url: str | None = None
    dev_token: str | None = Field(None, repr=False)

    @classmethod
    def load(cls) -> CatalogSettings:
        """From the environment and the stack's stack.env (when there is one)."""
        env_file = stack_env_file()
        return cls(_env_file=env_file if env_file.is_file() else None)

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
