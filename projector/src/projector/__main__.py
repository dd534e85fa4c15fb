"""`projector` command line."""

from __future__ import annotations

import argparse

import uvloop

from projector.settings import ProjectorSettings
from service_runtime.logs import configure_logging
from service_runtime.telemetry import configure_tracing, instrument_drivers


def main(argv: list[str] | None = None) -> None:
    """Entry point of the projector image."""
    parser = argparse.ArgumentParser(prog="projector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="consume the products' and reviews' topics into the read models")
    rebuild = sub.add_parser(
        "rebuild", help="replay both topics into a new generation of read models and switch to it"
    )
    rebuild.add_argument(
        "read_model", nargs="?", help="rebuild this read model alone (default: every one)"
    )
    rebuild.add_argument(
        "--grace-seconds",
        type=float,
        default=3.0,
        help="wait this long after the switch before dropping the old generation",
    )
    args = parser.parse_args(argv)
    configure_logging("projector")
    if args.command == "run":
        from projector.bootstrap import run_projector

        if configure_tracing("projector"):
            instrument_drivers("pymongo")
        uvloop.run(run_projector(ProjectorSettings()))
    elif args.command == "rebuild":
        from catalog_read_models.rebuild import RebuildError
        from projector.rebuild import rebuild as run_rebuild

        try:
            uvloop.run(
                run_rebuild(
                    ProjectorSettings(),
                    progress=lambda line: print(line, flush=True),
                    grace_seconds=args.grace_seconds,
                    read_model=args.read_model,
                )
            )
        except RebuildError as exc:
            parser.exit(2, f"projector rebuild: {exc}\n")


if __name__ == "__main__":
    main()
