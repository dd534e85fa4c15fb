"""`command-service` command line: serve the API, run the relay, migrate, create topics."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import uvloop

from command_service.settings import CommandSettings
from service_runtime.logs import configure_logging
from service_runtime.serving import serve
from service_runtime.telemetry import configure_tracing, instrument_drivers

log = logging.getLogger("command_service")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the command-service image."""
    parser = argparse.ArgumentParser(prog="command-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the command HTTP API")
    sub.add_parser("relay", help="publish the outbox to Kafka (leader-elected)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    sub.add_parser(
        "ensure-topics", help="create the events topics and their dead-letter topics if missing"
    )
    keys = sub.add_parser(
        "dev-keys",
        help="development only: a signing key in DIR (kept), its JWKS, and a DEV_TOKEN printed",
    )
    keys.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    if args.command == "dev-keys":
        # Compose's stand-in for an identity provider; make up does the same under .run/keys.
        from service_runtime.tokens import ensure_dev_credentials

        print(f"DEV_TOKEN={ensure_dev_credentials(args.directory)}", flush=True)
        return

    configure_logging("relay" if args.command == "relay" else "command-service")
    settings = CommandSettings()
    if args.command == "serve":
        from command_service.bootstrap import create_app

        if configure_tracing("command-service"):
            instrument_drivers("asyncpg")
        serve(create_app(settings), host=settings.host, port=settings.port)
    elif args.command == "relay":
        from command_service.relay.bootstrap import run_relay

        configure_tracing("relay")  # its own spans; its polling queries are not worth traces
        uvloop.run(run_relay(settings))
    elif args.command == "migrate":
        from command_service.adapters.migrate import migrate

        applied = asyncio.run(migrate(settings.migrate_dsn))
        log.info("migrations applied: %s", applied or "none pending")
    elif args.command == "ensure-topics":
        from command_service.relay.topics import ensure_topics

        created = asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap_servers,
                *settings.topics.values(),
                partitions=settings.topic_partitions,
                min_compaction_lag_ms=settings.topic_min_compaction_lag_ms,
            )
        )
        log.info("topics created: %s", created or "none (all exist)")


if __name__ == "__main__":
    main()
