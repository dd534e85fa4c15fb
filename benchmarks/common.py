"""What every stage shares: the stack's addresses, sizes, statistics, CPU sampling, processes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
STACKCTL = REPO / "deploy" / "local" / "stackctl"
VENV_BIN = Path(sys.executable).parent
# Where a run writes its results, logs and stack (BENCH_OUT_DIR: elsewhere, e.g. a test).
OUT_DIR = Path(os.environ.get("BENCH_OUT_DIR") or REPO / ".run" / "bench")
T = TypeVar("T")


async def open_loop(rate: float, seconds: float, job: Callable[[int], Awaitable[T]]) -> list[T]:
    """Start `job(n)` at n / rate seconds for `seconds`, whatever the earlier jobs are doing
    (open loop: a slow system cannot lower the load it is measured under); gather the results."""
    tasks = []
    start = time.perf_counter()
    for number in range(int(rate * seconds)):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(job(number)))
    return list(await asyncio.gather(*tasks))


def say(message: str) -> None:
    """Progress on stdout as the run goes; a full run takes half an hour."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big and how long each stage is; BENCH_QUICK=1 picks the small profile."""

    quick: bool
    reps: int
    seconds: float  # one throughput window (wrk or a raw loop)
    concurrency: int  # connections of the load generator and workers of every raw loop
    seed_products: int  # products the command stage seeds for its stock adjustments
    backlog_events: int  # relay and projector backlogs
    backlog_products: int  # products those backlog events are spread over
    categories: int
    single_seconds: float  # one window of the projector's one-event-at-a-time mode
    latency_seconds: float  # one window of the relay and end-to-end latency runs
    # Products in both models that the query, end-to-end and single-model stages each seed
    # (and remove) for themselves.
    catalog_products: int
    page_products: int  # products (0-50 reviews each) in both models for the product page

    @classmethod
    def from_env(cls) -> Sizes:
        if os.environ.get("BENCH_QUICK") == "1":
            return cls(True, 1, 5, 16, 500, 20_000, 2_000, 20, 8, 10, 20_000, 2_000)
        return cls(False, 3, 10, 16, 1_000, 100_000, 2_000, 20, 15, 20, 100_000, 20_000)


def stack_env() -> dict[str, str]:
    """The running stack's addresses (stackctl writes them to STACK_DIR/stack.env)."""
    path = stack_dir() / "stack.env"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def stack_dir() -> Path:
    """The benchmark's own local stack: `make up`'s, fresh for every run, on other ports."""
    return OUT_DIR / "stack"


def _stack_environ() -> dict[str, str]:
    env = {**os.environ, "STACK_DIR": str(stack_dir()), "STACK_PORT_OFFSET": "10000"}
    env.pop("STACK_FAULT_INJECTION", None)
    # The bench fires thousands of commands a second from one address: no gateway rate limit.
    env.update(STACK_GATEWAY_COMMAND_RATE="1000000", STACK_GATEWAY_COMMAND_BURST="1000000")
    # Traced as a production deployment would be: one new trace in a hundred is kept (the
    # others still pay for their non-recording spans); BENCH_TRACE_SAMPLE_RATIO changes it.
    env["STACK_TRACE_SAMPLE_RATIO"] = os.environ.get("BENCH_TRACE_SAMPLE_RATIO", "0.01")
    for variable in (  # a shell that sourced another stack's stack.env must not leak it in
        "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL",
        "STACK_DATABASE_URL", "STACK_KAFKA_BOOTSTRAP_SERVERS", "STACK_MONGODB_URL",
    ):  # fmt: skip
        env.pop(variable, None)
    if os.environ.get("BENCH_MONGODB_URL"):  # a real MongoDB for the read side
        env["STACK_MONGODB_URL"] = os.environ["BENCH_MONGODB_URL"]
    return env


def stackctl(*args: str, check: bool = True) -> int:
    """Run stackctl on the benchmark's stack."""
    result = subprocess.run(
        [str(STACKCTL), *args], capture_output=True, text=True, env=_stack_environ()
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"stackctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.returncode


def stack_status() -> str:
    """`stackctl status`: a line per part with its state and pid."""
    env = _stack_environ()
    return subprocess.run([str(STACKCTL), "status"], capture_output=True, text=True, env=env).stdout


def fresh_stack(*, reuse: bool = False) -> None:
    """A new stack for this run: the same parts and settings as `make up`, and no data.

    Every run starts from the same state (the sizes the stages create, nothing left from a
    run before), and the developer's own stack and its data are left alone. With `reuse`, the
    last run's stack starts again with its data. BENCH_MONGODB_URL, when set, points the read
    side at that server (a real MongoDB) instead of the stack's DocumentDB.
    """
    directory = stack_dir()
    if reuse and (directory / "stack.json").exists():
        say(f"starting the benchmark's stack of the last run in {directory}")
        _up()
        return
    if directory.exists():
        stackctl("down", check=False)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for path in (directory, *directory.parents):  # the postgres user walks down to its cluster
        if path == REPO.parent:
            break
        path.chmod(path.stat().st_mode | 0o755)
    say(f"starting the benchmark's own stack in {directory}")
    _up()


def _up() -> None:
    """`stackctl up`, and once more if it fails: `up` starts only what is not running yet, and
    a first start on a fresh machine was seen to fail once and pass when run again (its error,
    with the part's supervisord state and last log lines, stays on the output)."""
    for attempt in (1, 2):
        if subprocess.run([str(STACKCTL), "up"], env=_stack_environ()).returncode == 0:
            return
        if attempt == 1:
            say("the stack did not start (see above); `stackctl up` once more")
    raise RuntimeError(f"the benchmark's stack did not start; logs in {stack_dir() / 'logs'}")


def stop_stack() -> None:
    stackctl("down", check=False)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the smallest value with q% of them at or below."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # q * n first: 0.99 * 300 is a hair above 297 in floating point, 99 * 300 / 100 is not.
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine() -> dict[str, object]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count() or 0, "cpu_model": model}


class CpuMeter:
    """Busy share of all cores over the measurement windows, from /proc/stat.

    Tells whether a figure was limited by the machine: on two cores a saturated box makes every
    stage compete with every other process.
    """

    def __init__(self) -> None:
        self.busy = 0.0
        self.total = 0.0
        self._start: tuple[float, float] | None = None

    @staticmethod
    def _read() -> tuple[float, float]:
        with open("/proc/stat") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        """End a window; returns its busy percentage."""
        assert self._start is not None
        busy, total = self._read()
        window_busy, window_total = busy - self._start[0], total - self._start[1]
        self.busy += window_busy
        self.total += window_total
        self._start = None
        return 100 * window_busy / window_total if window_total else 0.0

    @property
    def pct(self) -> float:
        return 100 * self.busy / self.total if self.total else 0.0


CPU = CpuMeter()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_json(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None) -> object:
    """Run a load-generator process; its last stdout line is its result as JSON."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({result.returncode}): {result.stderr[-2000:]}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


class Service:
    """One of our services run by the harness itself with its own settings.

    Stages that need a relay or projector configured differently (another topic, polling,
    one event per batch) stop the supervised one and run this instead, so the stack's
    configuration stays untouched.
    """

    def __init__(self, name: str, argv: list[str], overrides: dict[str, str]) -> None:
        self.name = name
        log_dir = OUT_DIR / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **stack_env(), "PYTHONUNBUFFERED": "1", **overrides}
        self._path = log_dir / f"{name}.log"
        self._log = open(self._path, "ab")  # noqa: SIM115 - closed in stop()
        self._start = self._path.stat().st_size
        self._process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )

    def wait_for_log(self, text: str, limit: float) -> None:
        """Wait until this run of the service logged `text` (e.g. that it leads)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with open(self._path, "rb") as log:
                log.seek(self._start)
                if text.encode() in log.read():
                    return
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; see {self._path}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not log {text!r} in {limit:.0f}s; see {self._path}")

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        end_process(self._process, signal.SIGTERM, 20)
        self._log.close()


def end_process(process: subprocess.Popen[bytes], sig: signal.Signals, grace: float) -> None:
    """Send `sig` and wait up to `grace` seconds for the process to exit, then kill it."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def relay(name: str, **overrides: str) -> Service:
    """Our relay with COMMAND_* overrides and no metrics port (the supervised one has it)."""
    return Service(
        name,
        [str(VENV_BIN / "command-service"), "relay"],
        {"COMMAND_RELAY_METRICS_PORT": "0", **overrides},
    )


# What a relay logs once it holds outbox shards (command_service.relay.relay).
PUBLISHING = "relay publishes shards"


def leading_relay(name: str, **overrides: str) -> Service:
    """A relay that holds outbox shards, so a measurement starts with it publishing."""
    service = relay(name, **overrides)
    service.wait_for_log(PUBLISHING, 90)
    return service


def projector(name: str, **overrides: str) -> Service:
    return Service(
        name, [str(VENV_BIN / "projector"), "run"], {"PROJECTOR_METRICS_PORT": "0", **overrides}
    )
