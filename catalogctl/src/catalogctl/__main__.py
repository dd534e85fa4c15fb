"""`catalogctl`: the operator's tool of Catalog CQRS.

Configured by the environment or the stack's `.run/stack.env` (`STACK_ENV` names another).
Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from catalogctl.settings import CatalogSettings

app = typer.Typer(
    name="catalogctl",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


def run(step: Callable[[], T]) -> T:
    """Run `step`; an expected failure becomes one line on stderr and exit status 2."""
    try:
        return step()
    except (ValueError, OSError, ConnectionError, TimeoutError) as exc:
        err.print(f"[red]catalogctl: {exc}[/red]")
        raise typer.Exit(2) from None
    except Exception as exc:  # a driver's own error (asyncpg, pymongo): still one line
        err.print(f"[red]catalogctl: {type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def token(
    sub: Annotated[str, typer.Option("--sub", help="the token's subject (the caller)")] = "dev",
    scope: Annotated[
        str, typer.Option("--scope", help="space-separated scopes")
    ] = "catalog:write catalog:moderate",
    ttl: Annotated[
        int, typer.Option("--ttl", help="seconds it is valid for; negative gives an expired one")
    ] = 3600,
) -> None:
    """Mint a bearer token with the development signing key (`make up` made it)."""
    from service_runtime.tokens import SigningKey

    settings = run(CatalogSettings.load)
    key = run(lambda: SigningKey.load(settings.key_file()))
    minted = run(
        lambda: key.mint(
            sub,
            scope.split(),
            ttl=ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    print(minted)


@app.command()
def reconcile(
    repair: Annotated[bool, typer.Option("--repair", help="re-project what differs")] = False,
) -> None:
    """Compare the write model with every read model; with --repair, fix what differs."""
    from catalogctl.reconcile import reconcile as run_reconcile

    settings = run(CatalogSettings.load)
    run(lambda: settings.require("database_url", "mongodb_url"))
    consistent = run(
        lambda: asyncio.run(
            run_reconcile(
                settings.database_url or "",
                settings.mongodb_url or "",
                settings.mongodb_database,
                repair,
                out,
            )
        )
    )
    raise typer.Exit(0 if consistent else 1)


def main() -> None:
    """Entry point."""
    app()


if __name__ == "__main__":
    main()
