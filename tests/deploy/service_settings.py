"""What each image's process reads from its environment, from the services' own settings classes."""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from command_service.settings import CommandSettings
from projector.settings import ProjectorSettings
from query_service.settings import QuerySettings
from service_runtime import telemetry

SETTINGS: dict[str, type[BaseSettings]] = {
    "command-service": CommandSettings,
    "projector": ProjectorSettings,
    "query-service": QuerySettings,
}


def accepted_variables(image: str) -> set[str]:
    """Environment variable names the settings of `image` (catalog-cqrs/<image>) read, and the
    OpenTelemetry SDK's every service reads."""
    settings = SETTINGS[image]
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}")
    return {name.upper() for name in names} | telemetry.ENVIRONMENT


def default(image: str, field: str) -> object:
    """The default of one setting of `image`."""
    return SETTINGS[image].model_fields[field].default
