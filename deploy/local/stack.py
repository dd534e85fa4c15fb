"""`stackctl`: the local stack without containers, every process under supervisord.

Invoked through `deploy/local/stackctl`, which makes sure the workspace virtualenv exists first.
What the parts are is `stack_parts.PARTS`; how they are started, stopped and waited for is
`stack_engine`; installing what they need is `provision`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys

import stack_engine as engine
from stack_parts import PARTS


def main(argv: list[str] | None = None) -> int:
    """Run one stackctl verb; the exit status is the verb's."""
    # Health probes retry on purpose; the client libraries would log every refused connection.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    names = [part.name for part in PARTS]
    parser = argparse.ArgumentParser(prog="stackctl", description="Control the local stack.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up", help="install what is missing, start every part, wait until healthy")
    sub.add_parser("down", help="stop every part and the supervisor")
    sub.add_parser("status", help="show the state of every part")
    sub.add_parser("env", help="print stack.env")
    for action, text in (
        ("start", "start a part and wait until it is healthy"),
        ("stop", "stop a part"),
        ("kill", "SIGKILL a part (the supervisor restarts it)"),
        ("restart", "stop and start a part, then wait until it is healthy"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("name", choices=names)
    p = sub.add_parser("logs", help="print a part's log")
    p.add_argument("name", choices=(*names, "supervisord"))
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, default=200)
    args = parser.parse_args(argv)

    try:
        stack = engine.load_stack(PARTS, os.environ)
        if args.action == "up":
            engine.up(stack)
        elif args.action == "down":
            engine.down(stack)
        elif args.action == "status":
            return engine.status(stack)
        elif args.action == "env":
            print((stack.run_dir / "stack.env").read_text(), end="")
        elif args.action == "logs":
            log = stack.logs / f"{args.name}.log"
            cmd = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(log)]
            with contextlib.suppress(KeyboardInterrupt):
                return subprocess.call(cmd)
        else:
            engine.control(stack, args.action, args.name)
            engine.say(f"{args.action} {args.name}: done")
    except engine.StackError as exc:
        engine.say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
