"""`projector` command line."""

from __future__ import annotations

import argparse

import uvloop
from service_runtime.serving import configure_logging

from projector.settings import ProjectorSettings


def main(argv: list[str] | None = None) -> None:
    """Entry point of the projector image."""
    parser = argparse.ArgumentParser(prog="projector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="consume the events topic into the read models")
    args = parser.parse_args(argv)
    configure_logging()
    if args.command == "run":
        from projector.bootstrap import run_projector

        uvloop.run(run_projector(ProjectorSettings()))


if __name__ == "__main__":
    main()
