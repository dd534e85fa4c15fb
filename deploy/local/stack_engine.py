"""How the local stack runs: its configuration, supervisord, start order, health waits, verbs.

The engine knows no PostgreSQL or Kafka: it walks a table of `Part`s (`stack_parts.PARTS`),
renders supervisord's configuration from it, starts the parts in dependency order and waits
until each one answers its health check.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EVENTS_TOPIC_DEFAULT = "catalog.products.v1"

# A port in the kernel's ephemeral range can be taken by any outgoing connection while its
# server is down, and then the server cannot bind it again.
EPHEMERAL_PORTS = 32768
# Ports a developer machine may be serving with the real thing (PostgreSQL, Kafka, MongoDB, web
# servers, Prometheus, Jaeger and OTLP, toxiproxy): a stack moved by STACK_PORT_OFFSET skips
# them, so its clients never reach a server of someone else's.
WELL_KNOWN_PORTS = frozenset(
    {80, 443, 3000, 4317, 4318, 5432, 8000, 8080, 8443, 8474, 9090, 9092, 9093, 16686}
    | {27017, 27018, 27019}
)
START_TIMEOUT = 120.0  # `stackctl start` and `restart`: a part may be recovering its data
SUPERVISORD_START_TIMEOUT = 15.0
SUPERVISORD_EXIT_TIMEOUT = 60.0


class StackError(RuntimeError):
    """A part of the stack could not be provisioned or did not become healthy."""


def say(message: str) -> None:
    """Tell the user what stackctl is doing."""
    print(f"stackctl: {message}", flush=True)


def run(
    cmd: list[str],
    *,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing with its output when it fails."""
    result = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    if result.returncode != 0:
        output = f"\n{result.stdout}" if quiet and result.stdout else ""
        raise StackError(f"command failed ({result.returncode}): {' '.join(cmd)}{output}")
    return result


def port_free(port: int) -> bool:
    """Whether nothing listens on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------- the model


def _no_env(stack: Stack) -> Mapping[str, str]:
    return {}


def _always(stack: Stack) -> bool:
    return True


def _nothing(stack: Stack) -> None:
    return None


@dataclass(frozen=True)
class Part:
    """One process of the stack under supervisord, or the external server that replaces it."""

    name: str
    command: Callable[[Stack], Sequence[str]]
    health: Callable[[Stack], bool]  # true once it answers as `up` promises; may raise
    health_timeout: float = 60  # how long `up` waits for `health`
    ports: Mapping[str, int] = field(default_factory=dict)  # port key -> default port
    # Parts healthy (and `ready` done) before this one starts; one this stack leaves out is
    # not waited for.
    needs: tuple[str, ...] = ()
    env: Callable[[Stack], Mapping[str, str]] = _no_env
    exports: Callable[[Stack], Mapping[str, str]] = _no_env  # its lines of stack.env
    # Variables whose value (a URL) is a server of someone else's: then this part is not run,
    # only waited for.
    external: tuple[str, ...] = ()
    enabled: Callable[[Stack], bool] = _always  # whether this stack has the part at all
    # Every `up`, before supervisord starts it: install, initialize, write its configuration.
    provision: Callable[[Stack], None] = _nothing
    ready: Callable[[Stack], None] = _nothing  # every `up`, once healthy: schema, topics
    run_as: str | None = None  # the user to run as when stackctl is root
    stopsignal: str = "TERM"
    stopwait: int = 20
    # `stackctl stop|start|kill|restart NAME` acts on NAME and the parts that are its replicas.
    replica_of: str | None = None


@dataclass(frozen=True)
class Stack:
    """One stack: its parts, directory, ports, external servers and the environment it reads."""

    parts: tuple[Part, ...]
    run_dir: Path
    ports: Mapping[str, int]
    external: Mapping[str, str]  # part name -> URL of a server we do not run
    topic: str
    network_faults: bool = False  # toxiproxy on the projector's MongoDB link (kept in state)
    environ: Mapping[str, str] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        """supervisord's configuration file."""
        return self.run_dir / "supervisord.conf"

    @property
    def logs(self) -> Path:
        """The directory of every part's NAME.log."""
        return self.run_dir / "logs"

    def url(self, port: str) -> str:
        """The loopback HTTP address of a port key."""
        return f"http://127.0.0.1:{self.ports[port]}"

    def active(self) -> tuple[Part, ...]:
        """The parts of this stack, each after those it needs."""
        return tuple(part for part in dependency_order(self.parts) if part.enabled(self))

    def supervised(self) -> tuple[Part, ...]:
        """The active parts supervisord runs (not replaced by an external server)."""
        return tuple(part for part in self.active() if part.name not in self.external)

    def processes(self, name: str) -> tuple[str, ...]:
        """The programs `stackctl ACTION name` acts on."""
        return (name, *(part.name for part in self.active() if part.replica_of == name))

    def env(self) -> dict[str, str]:
        """stack.env: how clients reach this stack."""
        exported = {
            key: value for part in self.active() for key, value in part.exports(self).items()
        }
        return {**exported, "EVENTS_TOPIC": self.topic, "STACK_DIR": str(self.run_dir)}


def dependency_order(parts: Sequence[Part]) -> tuple[Part, ...]:
    """The parts, each after those it needs and otherwise in table order."""
    by_name = {part.name: part for part in parts}
    if len(by_name) != len(parts):
        raise StackError("two parts have the same name")
    placed: dict[str, Part] = {}
    path: list[str] = []

    def place(part: Part) -> None:
        if part.name in placed:
            return
        if part.name in path:
            cycle = " -> ".join([*path[path.index(part.name) :], part.name])
            raise StackError(f"parts need each other: {cycle}")
        path.append(part.name)
        for need in part.needs:
            if need not in by_name:
                raise StackError(f"{part.name} needs {need}, which is not a part")
            place(by_name[need])
        path.pop()
        placed[part.name] = part

    for part in parts:
        place(part)
    return tuple(placed.values())


def default_ports(parts: Sequence[Part]) -> dict[str, int]:
    """Every port key of the table with its default, whether or not a stack runs the part."""
    ports: dict[str, int] = {}
    for part in parts:
        for key, default in part.ports.items():
            if key in ports:
                raise StackError(f"port key {key} belongs to two parts")
            ports[key] = default
    return ports


def allocate_ports(
    defaults: Mapping[str, int], saved: Mapping[str, int], environ: Mapping[str, str]
) -> dict[str, int]:
    """A port per key: saved, STACK_PORT_<KEY>, or the first free one from default + offset."""
    ports = dict(saved)  # a stack from an older layout keeps its ports
    taken = set(saved.values())
    # A second stack beside the default one (the benchmark's) starts its search elsewhere, so
    # neither takes the other's usual ports while it happens to be down.
    offset = int(environ.get("STACK_PORT_OFFSET", "0"))
    for key, default in defaults.items():
        if key in ports:
            continue
        variable = f"STACK_PORT_{key.upper()}"
        if environ.get(variable):
            port = int(environ[variable])
            if not port_free(port):
                raise StackError(f"port {port} ({variable}) is in use; choose another")
        else:
            port = default + offset
            # Move past a clash with something already listening, or with a well-known port
            # whose server may start later.
            while port in taken or port in WELL_KNOWN_PORTS or not port_free(port):
                port += 1
                if port >= EPHEMERAL_PORTS:
                    raise StackError(f"no free port for {key} below the ephemeral range")
        ports[key] = port
        taken.add(port)
    return ports


def load_stack(parts: Sequence[Part], environ: Mapping[str, str]) -> Stack:
    """The stack of STACK_DIR (default .run/), reusing the ports it was first given."""
    run_dir = Path(environ.get("STACK_DIR", REPO / ".run")).resolve()
    defaults = default_ports(parts)
    dependency_order(parts)  # refuse a broken table before anything runs
    state_file = run_dir / "stack.json"
    saved: dict[str, int] = {}
    if state_file.exists():
        state = json.loads(state_file.read_text())
        saved = state["ports"]
        if set(saved) >= set(defaults):
            return Stack(
                tuple(parts),
                run_dir,
                saved,
                state["external"],
                state["topic"],
                state.get("network_faults", False),
                environ,
            )
    external = {}
    for part in parts:
        for variable in part.external:
            if environ.get(variable):
                external[part.name] = environ[variable]
                break
    return Stack(
        tuple(parts),
        run_dir,
        allocate_ports(defaults, saved, environ),
        external,
        environ.get("EVENTS_TOPIC", EVENTS_TOPIC_DEFAULT),
        environ.get("STACK_FAULT_INJECTION") == "1",
        environ,
    )


def save_stack(stack: Stack) -> None:
    """Keep the stack's ports and servers, so later commands find the same stack."""
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "ports": dict(stack.ports),
        "external": dict(stack.external),
        "topic": stack.topic,
        "network_faults": stack.network_faults,
    }
    (stack.run_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")


# --------------------------------------------------------------------------- supervisord


def program(stack: Stack, part: Part) -> str:
    """supervisord's section of one part: started by stackctl, restarted when it dies."""
    lines = [
        f"[program:{part.name}]",
        # supervisord expands %(...)s in values and splits the command as a shell would.
        f"command={shlex.join(part.command(stack)).replace('%', '%%')}",
        "autostart=false",
        "autorestart=true",
        "startsecs=1",
        "startretries=100",
        f"stopsignal={part.stopsignal}",
        f"stopwaitsecs={part.stopwait}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={stack.logs / f'{part.name}.log'}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
    ]
    if part.run_as and os.geteuid() == 0:
        lines.append(f"user={part.run_as}")
    env = part.env(stack)
    if env:
        pairs = ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in env.items())
        lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def supervisord_conf(stack: Stack) -> str:
    """supervisord's configuration: the daemon, then a program per part it runs."""
    daemon = f"""[unix_http_server]
file={stack.run_dir / "supervisor.sock"}
chmod=0700

[supervisord]
logfile={stack.logs / "supervisord.log"}
pidfile={stack.run_dir / "supervisord.pid"}
childlogdir={stack.logs}
directory={REPO}
identifier=catalog-cqrs

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{stack.run_dir / "supervisor.sock"}
"""
    return "\n".join([daemon, *(program(stack, part) for part in stack.supervised())])


def supervisord_pid(stack: Stack) -> int | None:
    """The pid of the stack's supervisord while it runs."""
    pidfile = stack.run_dir / "supervisord.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return None
    return pid if (stack.run_dir / "supervisor.sock").exists() else None


def supervisord_running(stack: Stack) -> bool:
    """Whether the stack's supervisord runs and listens."""
    return supervisord_pid(stack) is not None


def ctl(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """supervisorctl on this stack."""
    result = subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(stack.conf), *args],
        text=True,
        capture_output=True,
    )
    if check and result.returncode != 0:
        raise StackError(f"supervisorctl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def start_program(stack: Stack, name: str) -> None:
    """Start one program; one already running (e.g. restarted) is fine."""
    result = ctl(stack, "start", name, check=False)
    if result.returncode != 0 and "ALREADY_STARTED" not in result.stdout:
        raise StackError(
            f"{name} did not start: {result.stdout.strip()}; see {stack.logs}/{name}.log"
        )


# --------------------------------------------------------------------------- waiting


def health_wait(timeout: float) -> Retrying:
    """Probe every quarter second, through errors, until it says yes or `timeout` s have passed."""
    return Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.25),
        retry=retry_if_exception_type(Exception) | retry_if_result(lambda ok: not ok),
    )


def exit_wait(timeout: float) -> Retrying:
    """Look every 0.2 s whether a process has exited, for `timeout` seconds."""
    return Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.2),
        retry=retry_if_result(lambda gone: not gone),
    )


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, stack: Stack, log_name: str | None = None
) -> None:
    """Wait until `check` says yes, or fail with its last error and the log to read."""
    try:
        health_wait(timeout)(check)
    except RetryError as gave_up:
        error = gave_up.last_attempt.exception() if gave_up.last_attempt.failed else None
        last_error = f"{type(error).__name__}: {error}" if error else ""
        hint = f"; see {stack.logs / (log_name + '.log')}" if log_name else ""
        raise StackError(
            f"{what} not healthy after {timeout:.0f}s ({last_error}){hint}"
            + (diagnosis(stack, log_name) if log_name else "")
        ) from None


def diagnosis(stack: Stack, name: str, lines: int = 15) -> str:
    """What supervisord says of a program and the end of its log, for an error message: a
    part that never answered is told apart from one that exited, or never started."""
    if not supervisord_running(stack):
        return "\n  supervisord is not running"
    state = ctl(stack, "status", name, check=False).stdout.strip() or "(no status)"
    log = stack.logs / f"{name}.log"
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    shown = "\n    ".join(tail) if tail else "(empty)"
    return f"\n  supervisord: {state}\n  last lines of {log.name}:\n    {shown}"


def wait_healthy(stack: Stack, name: str, timeout: float) -> None:
    """Wait until one part answers as it does when `up` returns."""
    part = next(part for part in stack.parts if part.name == name)
    wait_until(name, lambda: part.health(stack), timeout, stack, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- verbs


def up(stack: Stack) -> None:
    """Provision every part, start each once it is provisioned and those it needs are ready,
    write stack.env.

    Parts are provisioned side by side and each starts as soon as it can, so a first start's
    builds (DocumentDB, Jaeger, toxiproxy) overlap the parts that need none of them.
    """
    started = time.monotonic()
    save_stack(stack)
    active = stack.active()
    supervised = {part.name for part in stack.supervised()}
    stack.logs.mkdir(parents=True, exist_ok=True)
    # Every part in its own thread (one to provision, one to bring up): none waits for a pool
    # slot held by a part that waits for it.
    pool = ThreadPoolExecutor(max_workers=2 * len(active) + 1, thread_name_prefix="stackctl")
    try:
        provisioned = {
            part.name: pool.submit(part.provision, stack)
            for part in active
            if part.name in supervised
        }
        stack.conf.write_text(supervisord_conf(stack))
        if not supervisord_running(stack):
            run([str(VENV_BIN / "supervisord"), "-c", str(stack.conf)])
            wait_until(
                "supervisord", lambda: supervisord_running(stack), SUPERVISORD_START_TIMEOUT, stack
            )
        else:
            ctl(stack, "reread")
            ctl(stack, "update")

        ready: dict[str, Future[None]] = {}

        def bring_up(part: Part) -> None:
            if part.name in supervised:
                provisioned[part.name].result()
            for need in part.needs:
                if need in ready:
                    ready[need].result()
            if part.name in supervised:
                start_program(stack, part.name)
            wait_healthy(stack, part.name, part.health_timeout)
            part.ready(stack)

        # In dependency order, so what a part needs has its future before the part does.
        for part in active:
            ready[part.name] = pool.submit(bring_up, part)
        for part in active:
            ready[part.name].result()
    finally:
        # On a failure the others are abandoned where they are (each ends within its timeout).
        pool.shutdown(wait=False, cancel_futures=True)

    env = stack.env()
    env_file = stack.run_dir / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    say(f"stack is up in {time.monotonic() - started:.1f}s")
    for part in active:
        for key in part.exports(stack):
            say(f"  {key}={env[key]}")
    say(f"  environment: {env_file}   logs: {stack.logs}/NAME.log")


def down(stack: Stack) -> None:
    """Stop every part, dependents first, then supervisord; wait until it has exited."""
    pid = supervisord_pid(stack)
    if pid is None:
        say("stack is not running")
        return
    # Services drain before their servers go away. Every part of the table is named: the stack
    # may have been started with other settings, and stopping a part it lacks is harmless.
    ours = [p.name for p in reversed(dependency_order(stack.parts)) if p.name not in stack.external]
    ctl(stack, "stop", *ours, check=False)
    ctl(stack, "shutdown", check=False)
    try:
        exit_wait(SUPERVISORD_EXIT_TIMEOUT)(lambda: not _alive(pid))
    except RetryError:
        raise StackError(f"supervisord (pid {pid}) did not exit") from None
    say("stack is down")


def status(stack: Stack) -> int:
    """Print supervisord's view of every part; 3 when the stack is not running."""
    if not supervisord_running(stack):
        say("stack is not running")
        return 3
    result = ctl(stack, "status", check=False)
    print(result.stdout, end="")
    return 0 if result.returncode == 0 else 3


def control(stack: Stack, action: str, name: str) -> None:
    """`start`, `stop`, `kill` or `restart` one part (with its replicas); start waits for it."""
    if not supervisord_running(stack):
        raise StackError("stack is not running; run `stackctl up` first")
    names = stack.processes(name)
    if action == "kill":
        ctl(stack, "signal", "KILL", *names)
    elif action == "start":
        for each in names:
            start_program(stack, each)
        for each in names:
            wait_healthy(stack, each, START_TIMEOUT)
    elif action == "restart":
        ctl(stack, "restart", *names)
        for each in names:
            wait_healthy(stack, each, START_TIMEOUT)
    else:
        ctl(stack, action, *names)
