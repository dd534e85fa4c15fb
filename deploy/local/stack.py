"""The local stack without containers: provisioning, supervision and health of every part.

Invoked through `deploy/local/stackctl`, which makes sure the workspace virtualenv exists first.
Every process runs under supervisord; this module renders its configuration, starts the parts
in dependency order, waits until each one is healthy and writes `stack.env`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Health probes retry on purpose; the client libraries would log every refused connection.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
LOCAL = REPO / "deploy" / "local"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("CATALOG_CACHE_DIR", Path.home() / ".cache" / "catalog-cqrs"))

NAMES = (
    "postgres", "kafka", "mongo", "command", "command-2", "relay", "projector", "query", "gateway",
)  # fmt: skip
# With STACK_FAULT_INJECTION=1 the projector reaches MongoDB through toxiproxy, so the fault
# suite can slow down or cut that link.
TOXIPROXY = "toxiproxy"
TOXIPROXY_VERSION = "v2.12.0"
PROJECTOR_MONGO_PROXY = "projector-mongo"
# FerretDB's own PostgreSQL cluster: separate from the write model's, so stopping one side's
# database never takes the other side down.
MONGO_STORE = "mongo-store"
CONTROLLABLE = (*NAMES, MONGO_STORE, TOXIPROXY)
# Two command-service processes behind the gateway: one Python process is one core at most, and
# the write side scales out by processes (replicas on Kubernetes). Each has half the pool, so
# the write model sees the connections of one instance with the default pool.
SERVICES = ("command", "command-2", "relay", "projector", "query")
COMMAND_POOL_PER_INSTANCE = 10
# `stackctl stop command` (start, kill, restart) acts on the command service: both processes.
PART_PROCESSES = {"command": ("command", "command-2")}
EVENTS_TOPIC_DEFAULT = "catalog.products.v1"

# Defaults stay clear of 5432, 9092, 27017 and 8080, which a developer machine may be using,
# and below 32768: a port in the kernel's ephemeral range can be taken by any outgoing
# connection while its server is down, and then the server cannot bind it again.
DEFAULT_PORTS = {
    "postgres": 15432,
    "kafka": 19092,
    "kafka_controller": 19093,
    "mongo": 17017,
    "mongo_store": 17432,
    "command": 18001,
    "query": 18002,
    "command_2": 18003,
    "relay_metrics": 18011,
    "projector_metrics": 18012,
    "gateway": 18080,
    "toxiproxy": 18474,
    "mongo_proxy": 17018,
}
DB_USER = "catalog"
DB_PASSWORD = "catalog"  # development-only credentials of a loopback-only cluster
DB_NAME = "catalog"


class StackError(RuntimeError):
    """A part of the stack could not be provisioned or did not become healthy."""


def say(message: str) -> None:
    print(f"stackctl: {message}", flush=True)


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --------------------------------------------------------------------------- configuration


@dataclass
class Stack:
    run_dir: Path
    ports: dict[str, int]
    external: dict[str, str]  # part -> URL of a server we do not provision
    topic: str
    network_faults: bool = False  # toxiproxy between the projector and MongoDB

    @property
    def conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def database_url(self) -> str:
        return self.external.get("postgres") or (
            f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.ports['postgres']}/{DB_NAME}"
        )

    @property
    def kafka_bootstrap(self) -> str:
        return self.external.get("kafka") or f"127.0.0.1:{self.ports['kafka']}"

    @property
    def mongodb_url(self) -> str:
        return self.external.get("mongo") or f"mongodb://127.0.0.1:{self.ports['mongo']}/"

    @property
    def proxied(self) -> bool:
        """Whether the projector's MongoDB link goes through toxiproxy."""
        return self.network_faults and "mongo" not in self.external

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        extra = {"TOXIPROXY_URL": self.url("toxiproxy")} if self.proxied else {}
        return {
            **extra,
            "GATEWAY_URL": self.url("gateway"),
            "COMMAND_URL": self.url("command"),
            "QUERY_URL": self.url("query"),
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DATABASE": "catalog",
            "EVENTS_TOPIC": self.topic,
            "STACK_DIR": str(self.run_dir),
        }


def load_stack() -> Stack:
    """The stack of STACK_DIR (default .run/), reusing the ports it was first given."""
    run_dir = Path(os.environ.get("STACK_DIR", REPO / ".run")).resolve()
    state_file = run_dir / "stack.json"
    saved: dict[str, int] = {}
    if state_file.exists():
        state = json.loads(state_file.read_text())
        saved = state["ports"]
        if set(saved) >= set(DEFAULT_PORTS):
            return Stack(
                run_dir,
                saved,
                state["external"],
                state["topic"],
                state.get("network_faults", False),
            )
    external = {}
    for part, variables in {
        "postgres": ("STACK_DATABASE_URL",),
        "kafka": ("STACK_KAFKA_BOOTSTRAP_SERVERS",),
        "mongo": ("STACK_MONGODB_URL", "MONGODB_URL"),
    }.items():
        for variable in variables:
            if os.environ.get(variable):
                external[part] = os.environ[variable]
                break
    ports: dict[str, int] = dict(saved)  # a stack from an older layout keeps its ports
    taken: set[int] = set(saved.values())
    # A second stack beside the default one (the benchmark's) starts its search elsewhere, so
    # neither takes the other's usual ports while it happens to be down.
    offset = int(os.environ.get("STACK_PORT_OFFSET", "0"))
    for name, default in DEFAULT_PORTS.items():
        variable = f"STACK_PORT_{name.upper()}"
        if name in ports:
            continue
        if os.environ.get(variable):
            port = int(os.environ[variable])
            if not port_free(port):
                raise StackError(f"port {port} ({variable}) is in use; choose another")
        else:
            port = default + offset
            # Detect a clash with something already listening and move past it.
            while port in taken or not port_free(port):
                port += 1
                if port >= 32768:
                    raise StackError(f"no free port for {name} below the ephemeral range")
        ports[name] = port
        taken.add(port)
    return Stack(
        run_dir,
        ports,
        external,
        os.environ.get("EVENTS_TOPIC", EVENTS_TOPIC_DEFAULT),
        os.environ.get("STACK_FAULT_INJECTION") == "1",
    )


def save_stack(stack: Stack) -> None:
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "ports": stack.ports,
        "external": stack.external,
        "topic": stack.topic,
        "network_faults": stack.network_faults,
    }
    (stack.run_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")


# --------------------------------------------------------------------------- installation


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages without starting their system services."""
    global _apt_updated
    if os.geteuid() != 0:
        raise StackError(
            f"missing {' '.join(packages)}; install them (needs root): "
            f"apt-get install {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        say("apt-get update")
        run(["apt-get", "update", "-qq"], env=env, quiet=True)
        _apt_updated = True
    say(f"installing {' '.join(packages)} from Debian")
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        # Keep the packages' own services (a cluster on 5432, nginx on 80) from starting.
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    createcluster = Path("/etc/postgresql-common/createcluster.conf")
    try:
        if "postgresql" in " ".join(packages) and not createcluster.exists():
            createcluster.parent.mkdir(parents=True, exist_ok=True)
            createcluster.write_text("create_main_cluster = false\n")
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            env=env,
            quiet=True,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)


def postgres_bin() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not candidates:
        apt_install("postgresql")
        return postgres_bin()
    return candidates[-1].parent


def nginx_bin() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        apt_install("nginx")
        return nginx_bin()
    return found


def ensure_java_and_maven() -> None:
    missing = [
        p
        for p, exe in (("default-jdk-headless", "java"), ("maven", "mvn"))
        if shutil.which(exe) is None
    ]
    if missing:
        apt_install(*missing)


def kafka_libs() -> Path:
    """Kafka's jars from Maven Central (Maven caches the downloads in ~/.m2)."""
    ensure_java_and_maven()
    pom = (LOCAL / "kafka" / "pom.xml").read_text()
    version = pom.split("<kafka.version>")[1].split("</kafka.version>")[0]
    libs = CACHE / f"kafka-{version}" / "libs"
    if not (libs / f"kafka_2.13-{version}.jar").exists():
        say(f"fetching Apache Kafka {version} from Maven Central")
        run(["bash", str(LOCAL / "kafka" / "kafka.sh"), "fetch", str(libs)])
    return libs


def ferretdb_binary() -> Path:
    """Our FerretDB launcher, built with `go build` (Go caches modules and builds)."""
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        raise StackError("Go is needed to build FerretDB; install Go 1.22 or newer")
    source = LOCAL / "ferretdb"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((source / name).read_bytes())
    binary = CACHE / "ferretdb" / digest.hexdigest()[:16] / "ferretdb"
    if not binary.exists():
        say("building FerretDB (first time only; Go caches the rest)")
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/local/go/bin"}
        run(["bash", str(source / "build.sh"), str(binary)], env=env)
    return binary


def toxiproxy_binary() -> Path:
    """Shopify's toxiproxy server, built with `go install` from the Go module proxy."""
    binary = CACHE / "toxiproxy" / TOXIPROXY_VERSION / "toxiproxy-server"
    if binary.exists():
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise StackError("Go is needed to build toxiproxy; install Go 1.22 or newer")
    say(f"building toxiproxy {TOXIPROXY_VERSION} (first time only)")
    gobin = binary.parent / "tmp"
    run(
        [go, "install", f"github.com/Shopify/toxiproxy/v2/cmd/server@{TOXIPROXY_VERSION}"],
        env={**os.environ, "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"},
        quiet=True,
    )
    (gobin / "server").rename(binary)
    gobin.rmdir()
    return binary


# --------------------------------------------------------------------------- postgres


def as_postgres(cmd: list[str]) -> list[str]:
    """Run as the postgres user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def postgres_data_dir(stack: Stack, name: str = "postgres") -> Path:
    """The cluster's directory under the run dir, or beside it when postgres cannot reach it."""
    data = stack.run_dir / name
    if os.geteuid() != 0:
        return data
    probe = subprocess.run(as_postgres(["test", "-x", str(stack.run_dir)]), check=False)
    if probe.returncode == 0:
        return data
    # The run dir's parents are closed to other users (e.g. a clone under /root): keep the
    # cluster in a world-traversable place and point the run dir at it.
    key = hashlib.sha256(str(stack.run_dir).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"catalog-cqrs-{name}-{key}"
    outside.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(outside, "postgres", "postgres")
    if not data.is_symlink():
        if data.exists():
            shutil.rmtree(data)
        data.symlink_to(outside)
    return outside


def init_postgres(stack: Stack, pg_bin: Path, name: str = "postgres") -> Path:
    base = postgres_data_dir(stack, name)
    data = base / "data"
    if (data / "PG_VERSION").exists():
        return data
    say(f"initializing a private PostgreSQL cluster ({name})")
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    pwfile = base / "pwfile"
    pwfile.write_text(DB_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    run(
        as_postgres(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]
        ),
        quiet=True,
    )
    pwfile.unlink()
    (base / "socket").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base / "socket", "postgres", "postgres")
    return data


# --------------------------------------------------------------------------- supervisord


def program(
    name: str,
    command: str,
    stack: Stack,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    stopsignal: str = "TERM",
    stopwait: int = 20,
    startsecs: int = 1,
) -> str:
    lines = [
        f"[program:{name}]",
        f"command={command}",
        "autostart=false",
        "autorestart=true",
        f"startsecs={startsecs}",
        "startretries=100",
        f"stopsignal={stopsignal}",
        f"stopwaitsecs={stopwait}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={stack.logs / f'{name}.log'}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
    ]
    if user:
        lines.append(f"user={user}")
    if env:
        pairs = ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in env.items())
        lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def postgres_program(stack: Stack, name: str, port: str, *, max_connections: int) -> str:
    """A private PostgreSQL cluster, run as the postgres user (it refuses root)."""
    data = postgres_data_dir(stack, name) / "data"
    return program(
        name,
        f"{postgres_bin() / 'postgres'} -D {data} -p {stack.ports[port]}"
        f" -c listen_addresses=127.0.0.1"
        f" -c unix_socket_directories={data.parent / 'socket'}"
        f" -c max_connections={max_connections} -c shared_buffers=256MB"
        " -c logging_collector=off",
        stack,
        user="postgres" if os.geteuid() == 0 else None,
        stopsignal="INT",
        stopwait=30,
    )


def render(stack: Stack) -> None:
    """Write supervisord's and nginx's configuration for this stack."""
    stack.logs.mkdir(parents=True, exist_ok=True)
    run_dir = stack.run_dir
    sections = [
        f"""[unix_http_server]
file={run_dir / "supervisor.sock"}
chmod=0700

[supervisord]
logfile={stack.logs / "supervisord.log"}
pidfile={run_dir / "supervisord.pid"}
childlogdir={stack.logs}
directory={REPO}
identifier=catalog-cqrs

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir / "supervisor.sock"}
"""
    ]
    service_env = {
        **stack.env(),
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "COMMAND_PORT": str(stack.ports["command"]),
        "QUERY_PORT": str(stack.ports["query"]),
        "COMMAND_RELAY_METRICS_PORT": str(stack.ports["relay_metrics"]),
        "PROJECTOR_METRICS_PORT": str(stack.ports["projector_metrics"]),
        "COMMAND_TOPIC_PARTITIONS": os.environ.get("STACK_TOPIC_PARTITIONS", "6"),
        "COMMAND_POOL_MAX_SIZE": str(COMMAND_POOL_PER_INSTANCE),
    }
    if os.environ.get("STACK_FAULT_INJECTION") == "1":
        # Arms the crash points of service_runtime.faults for the fault-injection suite.
        triggers = run_dir / "fault-triggers"
        triggers.mkdir(parents=True, exist_ok=True)
        service_env["CATALOG_FAULT_DIR"] = str(triggers)
    if "postgres" not in stack.external:
        sections.append(postgres_program(stack, "postgres", "postgres", max_connections=300))
    if "kafka" not in stack.external:
        libs = kafka_libs()
        heap = os.environ.get("STACK_KAFKA_HEAP", "-Xms256m -Xmx768m")
        sections.append(
            program(
                "kafka",
                f"bash {LOCAL / 'kafka' / 'kafka.sh'} run {libs} {run_dir / 'kafka' / 'config'}",
                stack,
                env={"KAFKA_HEAP_OPTS": heap},
                stopwait=30,
            )
        )
    if "mongo" not in stack.external:
        binary = ferretdb_binary()
        if ferretdb_backend() == "sqlite":
            (run_dir / "ferretdb").mkdir(parents=True, exist_ok=True)
            backend = f"-handler sqlite -sqlite-url file:{run_dir / 'ferretdb'}/"
        else:
            sections.append(
                postgres_program(stack, MONGO_STORE, "mongo_store", max_connections=200)
            )
            # FerretDB holds a backend connection per matched update of a batch; a bigger pool
            # keeps the projector's batches far from its limit.
            backend = f"-handler postgresql -postgresql-url {ferretdb_store_url(stack)}"
        sections.append(
            program(
                "mongo",
                f"{binary} -listen-addr 127.0.0.1:{stack.ports['mongo']} {backend}"
                " -log-level error",
                stack,
                stopwait=15,
            )
        )
    cli = {
        "command": "command-service serve",
        "command-2": "command-service serve",
        "relay": "command-service relay",
        "projector": "projector run",
        "query": "query-service serve",
    }
    if stack.proxied:
        proxies = [
            {
                "name": PROJECTOR_MONGO_PROXY,
                "listen": f"127.0.0.1:{stack.ports['mongo_proxy']}",
                "upstream": f"127.0.0.1:{stack.ports['mongo']}",
                "enabled": True,
            }
        ]
        config = run_dir / "toxiproxy.json"
        config.write_text(json.dumps(proxies, indent=2) + "\n")
        sections.append(
            program(
                TOXIPROXY,
                f"{toxiproxy_binary()} -host 127.0.0.1 -port {stack.ports['toxiproxy']}"
                f" -config {config}",
                stack,
            )
        )
    for name in SERVICES:
        env = dict(service_env)
        if name == "command-2":
            env["COMMAND_PORT"] = str(stack.ports["command_2"])
        if name == "projector" and stack.proxied:
            env["MONGODB_URL"] = f"mongodb://127.0.0.1:{stack.ports['mongo_proxy']}/"
        sections.append(program(name, str(VENV_BIN / cli[name]), stack, env=env, stopwait=15))
    nginx_dir = run_dir / "nginx"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    template = (LOCAL / "nginx" / "nginx.conf.tmpl").read_text()
    (nginx_dir / "nginx.conf").write_text(
        template.replace("{run_dir}", str(run_dir))
        .replace("{repo}", str(REPO))
        .replace("{command_port}", str(stack.ports["command"]))
        .replace("{command_2_port}", str(stack.ports["command_2"]))
        .replace("{query_port}", str(stack.ports["query"]))
    )
    (nginx_dir / "gateway-listen.conf").write_text(
        f"listen 127.0.0.1:{stack.ports['gateway']} reuseport backlog=4096;\n"
    )
    sections.append(
        program(
            "gateway",
            f"{nginx_bin()} -p {nginx_dir} -c {nginx_dir / 'nginx.conf'}",
            stack,
            stopsignal="QUIT",
        )
    )
    stack.conf.write_text("\n".join(sections))


def ferretdb_backend() -> str:
    backend = os.environ.get("STACK_FERRETDB_BACKEND", "postgresql")
    if backend not in ("postgresql", "sqlite"):
        raise StackError("STACK_FERRETDB_BACKEND must be postgresql or sqlite")
    return backend


def store_admin_url(stack: Stack) -> str:
    """The `postgres` database of FerretDB's own cluster."""
    return f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{stack.ports['mongo_store']}/postgres"


def ferretdb_store_url(stack: Stack, database: str = "ferretdb") -> str:
    return (
        f"postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{stack.ports['mongo_store']}/{database}"
        "?pool_max_conns=100"
    )


def supervisord_running(stack: Stack) -> bool:
    pidfile = stack.run_dir / "supervisord.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (ValueError, ProcessLookupError):
        return False
    return (stack.run_dir / "supervisor.sock").exists()


def ctl(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(VENV_BIN / "supervisorctl"), "-c", str(stack.conf), *args],
        text=True,
        capture_output=True,
    )
    if check and result.returncode != 0:
        raise StackError(f"supervisorctl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def start_part(stack: Stack, name: str) -> None:
    result = ctl(stack, "start", name, check=False)
    if result.returncode != 0 and "ALREADY_STARTED" not in result.stdout:
        raise StackError(
            f"{name} did not start: {result.stdout.strip()}; see {stack.logs}/{name}.log"
        )


# --------------------------------------------------------------------------- health checks


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, stack: Stack, log_name: str | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    hint = f"; see {stack.logs / (log_name + '.log')}" if log_name else ""
    raise StackError(f"{what} not healthy after {timeout:.0f}s ({last_error}){hint}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def postgres_ready(url: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        conn = await asyncpg.connect(url, timeout=2)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    return asyncio.run(probe())


def kafka_ready(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
            return True
        finally:
            await admin.close()

    return asyncio.run(probe())


def mongo_ready(url: str) -> bool:
    from pymongo import MongoClient

    with MongoClient(url, serverSelectionTimeoutMS=2000) as client:
        return bool(client.admin.command("ping").get("ok"))


def create_database(stack: Stack, admin_url: str | None = None, name: str = DB_NAME) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(
            admin_url or stack.database_url.rsplit("/", 1)[0] + "/postgres"
        )
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


def tune_ferretdb_store(stack: Stack) -> None:
    """Let FerretDB's equality filters use indexes (see deploy/local/ferretdb/store.sql)."""
    import asyncpg

    async def apply() -> None:
        conn = await asyncpg.connect(ferretdb_store_url(stack).split("?")[0])
        try:
            await conn.execute((LOCAL / "ferretdb" / "store.sql").read_text())
        finally:
            await conn.close()

    asyncio.run(apply())


# --------------------------------------------------------------------------- commands


def wait_healthy(stack: Stack, name: str, timeout: float = 120) -> None:
    """Wait until one part answers as it does when `up` returns."""
    local_pg = stack.database_url.rsplit("/", 1)[0] + "/postgres"
    checks: dict[str, Callable[[], bool]] = {
        "postgres": lambda: postgres_ready(local_pg),
        "kafka": lambda: kafka_ready(stack.kafka_bootstrap),
        "mongo": lambda: mongo_ready(stack.mongodb_url),
        "command": lambda: http_ok(stack.url("command") + "/readyz"),
        "command-2": lambda: http_ok(stack.url("command_2") + "/readyz"),
        "query": lambda: http_ok(stack.url("query") + "/readyz"),
        "relay": lambda: http_ok(stack.url("relay_metrics") + "/metrics"),
        "projector": lambda: http_ok(stack.url("projector_metrics") + "/metrics"),
        "gateway": lambda: http_ok(stack.url("gateway") + "/healthz"),
        MONGO_STORE: lambda: postgres_ready(store_admin_url(stack)),
        TOXIPROXY: lambda: http_ok(stack.url("toxiproxy") + "/version"),
    }
    wait_until(name, checks[name], timeout, stack, name)


def service_env(stack: Stack) -> dict[str, str]:
    return {
        **os.environ,
        **stack.env(),
        "COMMAND_TOPIC_PARTITIONS": os.environ.get("STACK_TOPIC_PARTITIONS", "6"),
    }


def up(stack: Stack) -> None:
    started = time.monotonic()
    save_stack(stack)
    if "postgres" not in stack.external:
        init_postgres(stack, postgres_bin())
    if "mongo" not in stack.external and ferretdb_backend() == "postgresql":
        init_postgres(stack, postgres_bin(), MONGO_STORE)
    if "kafka" not in stack.external:
        run(
            [
                "bash",
                str(LOCAL / "kafka" / "kafka.sh"),
                "prepare",
                str(kafka_libs()),
                str(stack.run_dir / "kafka" / "config"),
                str(stack.run_dir / "kafka" / "data"),
                str(stack.ports["kafka"]),
                str(stack.ports["kafka_controller"]),
            ],
            quiet=True,
        )
    render(stack)
    if not supervisord_running(stack):
        run([str(VENV_BIN / "supervisord"), "-c", str(stack.conf)])
        wait_until("supervisord", lambda: supervisord_running(stack), 15, stack)
    else:
        ctl(stack, "reread")
        ctl(stack, "update")

    if "postgres" not in stack.external:
        start_part(stack, "postgres")
        wait_healthy(stack, "postgres", 60)
        create_database(stack)
    say("applying migrations")
    run([str(VENV_BIN / "command-service"), "migrate"], env=service_env(stack), quiet=True)

    if "kafka" not in stack.external:
        start_part(stack, "kafka")
    wait_healthy(stack, "kafka", 120)
    run([str(VENV_BIN / "command-service"), "ensure-topics"], env=service_env(stack), quiet=True)

    if "mongo" not in stack.external:
        if ferretdb_backend() == "postgresql":
            start_part(stack, MONGO_STORE)
            wait_healthy(stack, MONGO_STORE, 60)
            create_database(stack, store_admin_url(stack), "ferretdb")
            tune_ferretdb_store(stack)
        start_part(stack, "mongo")
    wait_healthy(stack, "mongo", 60)
    if stack.proxied:
        start_part(stack, TOXIPROXY)
        wait_healthy(stack, TOXIPROXY, 30)

    for name in SERVICES:
        start_part(stack, name)
    for name in SERVICES:
        wait_healthy(stack, name, 60)
    start_part(stack, "gateway")
    wait_healthy(stack, "gateway", 30)
    # Through the gateway to the query service and its store, by the cheapest read: an
    # unfiltered product list costs a sort over every document on FerretDB.
    wait_until(
        "gateway routing",
        lambda: http_ok(stack.url("gateway") + "/api/v1/categories"),
        30,
        stack,
        "gateway",
    )

    env_file = stack.run_dir / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack.env().items()))
    say(f"stack is up in {time.monotonic() - started:.1f}s")
    for key in (
        "GATEWAY_URL",
        "COMMAND_URL",
        "QUERY_URL",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "MONGODB_URL",
    ):
        say(f"  {key}={stack.env()[key]}")
    say(f"  environment: {env_file}   logs: {stack.logs}/NAME.log")


def down(stack: Stack) -> None:
    if not supervisord_running(stack):
        say("stack is not running")
        return
    pid = int((stack.run_dir / "supervisord.pid").read_text().strip())
    # Stop in reverse dependency order so services drain before their servers go away.
    ctl(stack, "stop", "gateway", *SERVICES, check=False)
    ctl(stack, "stop", TOXIPROXY, "mongo", "kafka", "postgres", check=False)
    ctl(stack, "stop", MONGO_STORE, check=False)
    ctl(stack, "shutdown", check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise StackError(f"supervisord (pid {pid}) did not exit")
    say("stack is down")


def status(stack: Stack) -> int:
    if not supervisord_running(stack):
        say("stack is not running")
        return 3
    result = ctl(stack, "status", check=False)
    print(result.stdout, end="")
    return 0 if result.returncode == 0 else 3


def main(argv: list[str] | None = None) -> int:
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
        p.add_argument("name", choices=CONTROLLABLE)
    p = sub.add_parser("logs", help="print a part's log")
    p.add_argument("name", choices=(*CONTROLLABLE, "supervisord"))
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, default=200)
    args = parser.parse_args(argv)

    try:
        stack = load_stack()
        if args.action == "up":
            up(stack)
        elif args.action == "down":
            down(stack)
        elif args.action == "status":
            return status(stack)
        elif args.action == "env":
            print((stack.run_dir / "stack.env").read_text(), end="")
        elif args.action == "logs":
            log = stack.logs / f"{args.name}.log"
            cmd = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(log)]
            with contextlib.suppress(KeyboardInterrupt):
                return subprocess.call(cmd)
        else:
            if not supervisord_running(stack):
                raise StackError("stack is not running; run `stackctl up` first")
            names = PART_PROCESSES.get(args.name, (args.name,))
            if args.action == "kill":
                ctl(stack, "signal", "KILL", *names)
            elif args.action == "start":
                for name in names:
                    start_part(stack, name)  # already running (e.g. restarted) is fine
                for name in names:
                    wait_healthy(stack, name)
            elif args.action == "restart":
                ctl(stack, args.action, *names)
                for name in names:
                    wait_healthy(stack, name)
            else:
                ctl(stack, args.action, *names)
            say(f"{args.action} {args.name}: done")
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
