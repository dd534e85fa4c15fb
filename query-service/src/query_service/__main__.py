"""`query-service` command line."""

from __future__ import annotations

import argparse

from query_service.settings import QuerySettings
from service_runtime.logs import configure_logging
from service_runtime.serving import serve
from service_runtime.telemetry import configure_tracing, instrument_drivers


def main(argv: list[str] | None = None) -> None:
    """Entry point of the query-service image."""
    parser = argparse.ArgumentParser(prog="query-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the query HTTP API")
    args = parser.parse_args(argv)
    configure_logging("query-service")
    if configure_tracing("query-service"):
        instrument_drivers("pymongo")
    if args.command == "serve":
        from query_service.bootstrap import create_app

        settings = QuerySettings()
        serve(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
