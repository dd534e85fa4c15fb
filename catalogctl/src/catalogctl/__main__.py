"""`catalogctl`: the operator's tool of Catalog CQRS.

Configured by the environment or the stack's `.run/stack.env` (`STACK_ENV` names another).
Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from catalog_contracts.relay import shard_ranges
from catalogctl.settings import CatalogSettings

if TYPE_CHECKING:
    from catalogctl.dlq import DeadLetter

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
JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def run(step: Callable[[], T]) -> T:
    """Run `step`; an expected failure becomes one line on stderr and exit status 2."""
    try:
        return step()
    except (ValueError, OSError, ConnectionError, TimeoutError) as exc:
        err.print(f"[red]catalogctl: {escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    except Exception as exc:  # a driver's own error (asyncpg, pymongo): still one line
        text = str(exc)
        if not text.startswith(type(exc).__name__):
            text = f"{type(exc).__name__}: {text}"
        err.print(f"[red]catalogctl: {escape(text)}[/red]")
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
                err,
            )
        )
    )
    raise typer.Exit(0 if consistent else 1)


@app.command()
def rebuild(
    read_model: Annotated[
        str | None,
        typer.Argument(
            help="rebuild this read model alone (product_list, product_detail, categories);"
            " every one without it",
            show_default=False,
        ),
    ] = None,
    grace_seconds: Annotated[
        float,
        typer.Option(
            "--grace-seconds",
            min=0,
            help="wait this long after the switch before dropping the old collections",
        ),
    ] = 3.0,
) -> None:
    """Blue/green rebuild: replay the topics into new collections while the live projection
    keeps running, switch readers to them, then drop the old ones."""
    from catalog_read_models.rebuild import RebuildError, rebuildable
    from catalogctl.rebuild import run_rebuild

    def checked(step: Callable[[], T]) -> T:
        try:
            return step()
        except RebuildError as exc:
            raise ValueError(str(exc)) from None

    run(lambda: checked(lambda: rebuildable(read_model)))
    settings = run(CatalogSettings.load)
    run(lambda: settings.require("kafka_bootstrap_servers", "mongodb_url"))
    run(
        lambda: checked(
            lambda: asyncio.run(
                run_rebuild(
                    settings.mongodb_url or "",
                    settings.mongodb_database,
                    settings.kafka_bootstrap_servers or "",
                    settings.topics,
                    read_model,
                    grace_seconds,
                    out,
                    err,
                )
            )
        )
    )


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Relay leaders and shards, outbox backlog, lag per partition, dead letters, categories
    staleness and commit-to-view p50/p99."""
    from catalogctl.status import status as gather

    settings = run(CatalogSettings.load)
    run(lambda: settings.require("database_url", "kafka_bootstrap_servers"))
    figures = run(
        lambda: asyncio.run(
            gather(
                settings.database_url or "",
                settings.kafka_bootstrap_servers or "",
                settings.topics,
                settings.projector_group_id,
                settings.projector_metrics_url,
            )
        )
    )
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    running, shards = figures["relays"], figures["shards"]
    out.print(f"[bold]relays[/bold]: {len(running)} running, {shards['total']} shards")
    for relay in running:
        held = relay["shards"]
        out.print(
            f"  pid {relay['pid']} ({relay['client']}) publishes {len(held)} shard(s):"
            f" {shard_ranges(held) or 'none'}"
        )
    if shards["without_relay"]:
        out.print(
            f"  [red]shards without a relay (not published): "
            f"{shard_ranges(shards['without_relay'])}[/red]"
        )
    backlog = figures["outbox"]
    out.print(
        f"[bold]outbox[/bold]: {backlog['backlog']} unpublished, "
        f"oldest {backlog['oldest_age_seconds']:.1f}s"
    )
    table = Table("topic", "partition", "end", "committed", "lag", title="projector lag")
    for row in figures["consumer_lag"]:
        table.add_row(
            row["topic"],
            str(row["partition"]),
            str(row["end_offset"]),
            str(row["committed_offset"]),
            str(row["lag"]),
        )
    out.print(table)
    for topic, count in figures["dead_letters"].items():
        out.print(f"[bold]dead letters[/bold] {topic}: {count}")
    projector = figures["projector"] or {"error": "PROJECTOR_METRICS_URL not set"}
    if "error" in projector:
        out.print(f"[bold]projector[/bold]: [red]{projector['error']}[/red]")
    else:
        out.print(
            f"[bold]categories staleness[/bold]: {projector['categories_staleness_seconds']}s; "
            f"[bold]commit-to-view[/bold] p50 {projector['commit_to_view_p50_ms']} ms, "
            f"p99 {projector['commit_to_view_p99_ms']} ms "
            f"({projector['commit_to_view_samples']} events)"
        )


dlq_app = typer.Typer(
    help="Dead letters: list, show and replay them to their source topic.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")

TopicOption = Annotated[
    str | None,
    typer.Option("--topic", help="the source or dead-letter topic, when an offset is in both"),
]


def kafka_settings() -> CatalogSettings:
    settings = run(CatalogSettings.load)
    run(lambda: settings.require("kafka_bootstrap_servers"))
    return settings


def load_dead_letters(settings: CatalogSettings) -> list[DeadLetter]:
    from catalogctl.dlq import dead_letters

    bootstrap = settings.kafka_bootstrap_servers or ""
    return run(lambda: asyncio.run(dead_letters(bootstrap, settings.topics)))


@dlq_app.command("list")
def dlq_list(as_json: JsonFlag = False) -> None:
    """Every dead letter: its own topic and offset, why, and where it came from."""
    letters = load_dead_letters(kafka_settings())
    if as_json:
        print(json.dumps([letter.summary() for letter in letters], indent=2))
        return
    if not letters:
        out.print("no dead letters")
        return
    table = Table("topic", "offset", "reason", "source", "key", "replayed", "detail")
    for letter in letters:
        source = f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        key = letter.key.decode(errors="replace") if letter.key else ""
        table.add_row(
            letter.topic,
            str(letter.offset),
            letter.reason,
            source,
            key,
            "yes" if letter.replayed else "no",
            letter.detail[:60],
        )
    out.print(table)


@dlq_app.command("show")
def dlq_show(offset: int, topic: TopicOption = None) -> None:
    """One dead letter in full: headers, key and value."""
    from catalogctl.dlq import select

    letter = run(lambda: select(load_dead_letters(kafka_settings()), offset, topic))
    document = {
        **letter.summary(),
        "headers": {name: value.decode(errors="replace") for name, value in letter.headers},
        "value": (letter.value or b"").decode(errors="replace"),
    }
    print(json.dumps(document, indent=2))


@dlq_app.command("replay")
def dlq_replay(
    replay_all: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    offset: Annotated[int | None, typer.Option("--offset", help="this dead letter")] = None,
    topic: TopicOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be done")] = False,
) -> None:
    """Re-publish dead letters to their source topic, once each (a replayed one is skipped)."""
    from catalogctl.dlq import replay, select

    if replay_all == (offset is not None):
        err.print("[red]catalogctl: give either --all or --offset N[/red]")
        raise typer.Exit(2)
    settings = kafka_settings()
    letters = load_dead_letters(settings)
    if offset is not None:
        letters = [run(lambda: select(letters, offset, topic))]
    elif topic is not None:
        letters = [x for x in letters if topic in (x.topic, x.source_topic)]
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("replaying", total=sum(1 for x in letters if not x.replayed))
        outcome = run(
            lambda: asyncio.run(
                replay(
                    settings.kafka_bootstrap_servers or "",
                    letters,
                    dry_run=dry_run,
                    progress=lambda _: bar.advance(task),
                )
            )
        )
    verb = "would replay" if dry_run else "replayed"
    for letter in outcome.replayed:
        out.print(f"{verb} {letter.name} to {letter.source_topic}")
    for letter in outcome.skipped:
        out.print(f"skipped {letter.name}: replayed before")
    out.print(f"{verb} {len(outcome.replayed)}, skipped {len(outcome.skipped)}")


def main() -> None:
    """Entry point."""
    # Drivers log what they retry (aiokafka's failed connections, say) to stderr, where an
    # operator expects one line per failure: the error this tool reports itself.
    logging.basicConfig(level=logging.CRITICAL, format="catalogctl: %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
