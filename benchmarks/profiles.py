"""Where a stage's CPU goes: py-spy samples of our processes, summed by package.

A target the pipeline misses needs the profile that says what dominates. The profiled stages
sample their services from outside (py-spy, `--nonblocking`: the process is never paused) and
write `.run/bench/profiles/<name>.txt`: the share of on-CPU samples by the package whose code
was running (the innermost frame that belongs to a known package), then the busiest frames.
The raw samples stay beside it (`<name>.raw`, flamegraph.pl's input).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import OUT_DIR, VENV_BIN, end_process

PROFILE_DIR = OUT_DIR / "profiles"
RATE = 100  # samples per second

# (label, how the frame's file path starts: py-spy names files from their import root); the
# first match from the innermost frame wins.
PACKAGES = (
    ("asyncpg (driver, incl. its C protocol)", "(asyncpg/"),
    ("aiokafka (producer/consumer)", "(aiokafka/"),
    ("pymongo (driver)", "(pymongo/"),
    ("bson", "(bson/"),
    ("pydantic (validation)", "(pydantic"),
    ("prometheus_client (metrics)", "(prometheus_client/"),
    ("fastapi (routing, dependencies)", "(fastapi/"),
    ("starlette (ASGI toolkit)", "(starlette/"),
    ("uvicorn (HTTP server, event loop)", "(uvicorn/"),
    ("our code: command-service", "(command_service/"),
    ("our code: projector", "(projector/"),
    ("our code: query-service", "(query_service/"),
    ("our code: contracts", "(catalog_contracts/"),
    ("our code: service runtime", "(service_runtime/"),
    ("asyncio (event loop)", "(asyncio/"),
)


@dataclass(frozen=True)
class Profile:
    name: str
    samples: int
    shares: list[tuple[str, float]]  # (package, percent of samples)
    frames: list[tuple[str, float]]  # (innermost frame, percent of samples)

    def summary(self, top: int = 5) -> str:
        if not self.samples:
            return f"profile {self.name}: no samples"
        parts = ", ".join(f"{label} {pct:.0f}%" for label, pct in self.shares[:top])
        return f"profile {self.name} ({self.samples:,} samples): {parts}"


class Sampler:
    """py-spy recording one process until `stop()`."""

    def __init__(self, name: str, pid: int) -> None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.raw = PROFILE_DIR / f"{name}.raw"
        self._log = open(PROFILE_DIR / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                str(self.raw),
                "--nonblocking",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> Profile:
        end_process(self._process, signal.SIGINT, 30)  # py-spy writes its file on Ctrl-C
        self._log.close()
        profile = summarize(self.name, self.raw)
        write(profile)
        return profile


def summarize(name: str, raw: Path) -> Profile:
    by_package: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    total = 0
    if raw.exists():
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            by_frame[frames[-1]] += n
            for frame in reversed(frames):
                label = next((label for label, part in PACKAGES if part in frame), None)
                if label is not None:
                    by_package[label] += n
                    break
            else:
                by_package["other"] += n

    def shares(counter: Counter[str], top: int) -> list[tuple[str, float]]:
        return [(key, 100 * n / total) for key, n in counter.most_common(top)]

    return Profile(name, total, shares(by_package, 20), shares(by_frame, 15))


def write(profile: Profile) -> None:
    lines = [f"# {profile.name}: {profile.samples:,} on-CPU samples at {RATE}/s", ""]
    lines += ["## by package (innermost frame of a known package)", ""]
    lines += [f"{pct:5.1f}%  {label}" for label, pct in profile.shares]
    lines += ["", "## busiest frames (where the sample was taken)", ""]
    lines += [f"{pct:5.1f}%  {frame}" for frame, pct in profile.frames]
    (PROFILE_DIR / f"{profile.name}.txt").write_text("\n".join(lines) + "\n")


def supervised_pid(status: str, name: str) -> int:
    """The pid of a part in `stackctl status` output."""
    for line in status.splitlines():
        fields = line.split()
        if fields and fields[0] == name and "pid" in fields:
            return int(fields[fields.index("pid") + 1].rstrip(","))
    raise RuntimeError(f"{name} is not running: {status}")


# (label, substrings that must all be in the command line); the first match wins.
PARTS = (
    ("command-service", ("command-service", "serve")),
    ("relay", ("command-service", "relay")),
    ("projector", ("projector", "run")),
    ("query-service", ("query-service", "serve")),
    ("documentdb gateway", ("documentdb_gateway",)),
    ("kafka", ("java", "kafka")),
    ("gateway (nginx)", ("nginx",)),
    # a backend's title: `postgres: USER DATABASE HOST STATE`
    ("postgres: write model", ("postgres: ", "postgres: catalog catalog ")),
    ("postgres: background", ("postgres: ",)),
)
# DocumentDB's PostgreSQL cluster (the stack part `mongo-store`): its postmaster's command line
# names the cluster's directory. Its backends (the gateway's sessions, as the store's users, in
# its `postgres` database) and its background workers are that postmaster's children.
STORE = "postgres: DocumentDB's store"
STORE_CLUSTER = "mongo-store"
TICKS = os.sysconf("SC_CLK_TCK")


def _part(cmdline: str, parent: str = "") -> str | None:
    """The part a command line belongs to, given its parent's; PostgreSQL backends title
    themselves `postgres: `, and the store cluster's are told apart by their postmaster."""
    if cmdline.startswith("postgres: ") and STORE_CLUSTER in parent:
        return STORE
    for label, needles in PARTS:
        if needles[0] == "postgres: " and not cmdline.startswith(needles[0]):
            continue
        if all(needle in cmdline for needle in needles):
            return label
    return None


def _cmdline(pid: str) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _process_ticks() -> dict[int, tuple[str, int]]:
    """Every process's part label and its user+system CPU ticks so far."""
    found: dict[int, tuple[str, int]] = {}
    parents: dict[str, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = _cmdline(entry.name)
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent = ""
            if cmdline.startswith("postgres: "):  # only a backend needs its postmaster's
                ppid = fields[1]
                if ppid not in parents:
                    parents[ppid] = _cmdline(ppid)
                parent = parents[ppid]
        except OSError:
            continue  # gone meanwhile
        label = _part(cmdline, parent)
        if label is not None:
            found[int(entry.name)] = (label, int(fields[11]) + int(fields[12]))
    return found


class CpuByPart:
    """CPU of each part of the stack over a window, in cores (1.0 = one core busy throughout).

    A thread reads /proc twice a second, so a process that exits inside the window (a baseline's
    PostgreSQL backends) counts up to its last reading. The harness's own children (wrk, the
    raw baselines) count once they have exited and been waited for, which is how each measured
    window ends.
    """

    def __init__(self) -> None:
        self._first = _process_ticks()
        self._last = dict(self._first)
        self._children = self._children_seconds()
        self._wall = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            self._last.update(_process_ticks())

    @staticmethod
    def _children_seconds() -> float:
        times = os.times()
        return times.children_user + times.children_system

    def stop(self) -> str:
        self._done.set()
        self._thread.join()
        self._last.update(_process_ticks())
        wall = time.monotonic() - self._wall
        used: dict[str, float] = {}
        for pid, (label, ticks) in self._last.items():
            before = self._first.get(pid, (label, 0))[1]
            used[label] = used.get(label, 0.0) + (ticks - before) / TICKS
        used["load generator / baseline (harness children)"] = (
            self._children_seconds() - self._children
        )
        parts = [
            f"{label} {seconds / wall:.2f}"
            for label, seconds in sorted(used.items(), key=lambda x: -x[1])
            if seconds > 0.02 * wall
        ]
        return "cores busy: " + ", ".join(parts)
