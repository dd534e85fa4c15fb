"""What the local stack is made of: one entry per part in `PARTS`.

An entry says how supervisord runs the part, which ports it takes, how to tell it is healthy,
what it needs first, what is done before it starts and once it is ready, and what it adds to
stack.env. `stack_engine` walks the table; adding a part is adding an entry.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import provision
from stack_engine import REPO, VENV_BIN, Part, Stack, StackError, run, say, wait_until

from service_runtime.tokens import (
    DEV_ISSUER,
    JWKS_FILE,
    KEY_FILE,
    TOKEN_FILE,
    ensure_dev_credentials,
)

LOCAL = provision.LOCAL
DB_USER = "catalog"
DB_PASSWORD = "catalog"  # development-only credentials of a loopback-only cluster
DB_NAME = "catalog"
# Two command-service processes behind the gateway: one Python process is one core at most, and
# the write side scales out by processes (replicas on Kubernetes). Each has half the pool, so
# the write model sees the connections of one instance with the default pool.
COMMAND_POOL_PER_INSTANCE = 10
# With STACK_FAULT_INJECTION=1 the projector reaches MongoDB through this toxiproxy proxy, so
# the fault suite can slow down or cut that link.
PROJECTOR_MONGO_PROXY = "projector-mongo"
# The products' events topic is the stack's own (`Stack.topic`, EVENTS_TOPIC); the reviews' one
# sits beside it.
REVIEWS_TOPIC_DEFAULT = "catalog.reviews.v1"


# --------------------------------------------------------------------------- addresses


def database_url(stack: Stack) -> str:
    """The write model's database."""
    return stack.external.get("postgres") or (
        f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{stack.ports['postgres']}/{DB_NAME}"
    )


def admin_url(stack: Stack) -> str:
    """The `postgres` database of the write model's server, which exists before ours does."""
    return database_url(stack).rsplit("/", 1)[0] + "/postgres"


def kafka_bootstrap(stack: Stack) -> str:
    """Kafka's bootstrap servers."""
    return stack.external.get("kafka") or f"127.0.0.1:{stack.ports['kafka']}"


# The read store's users (DocumentDB: PostgreSQL roles that log in through its gateway with
# SCRAM-SHA-256). The admin user is MONGODB_URL in stack.env, for tests and operator tools; the
# projector writes as its own user; the query service reads as one the server refuses writes to.
STORE_ADMIN = "catalog_admin"
STORE_PROJECTOR = "catalog_projector"
STORE_READER = "catalog_reader"
STORE_PASSWORD = "catalog"  # development-only credentials of a loopback-only server
# The database of the store's cluster that holds DocumentDB (and pg_cron's jobs).
STORE_DATABASE = "postgres"


def mongodb_url(stack: Stack, user: str = STORE_ADMIN, port: str = "mongo") -> str:
    """The read models' MongoDB as `user` (DocumentDB unless an external MongoDB is given, whose
    one URL every client then uses)."""
    if "mongo" in stack.external:
        return stack.external["mongo"]
    return (
        f"mongodb://{user}:{STORE_PASSWORD}@127.0.0.1:{stack.ports[port]}/"
        "?authMechanism=SCRAM-SHA-256&directConnection=true"
    )


def store_admin_url(stack: Stack) -> str:
    """The database of DocumentDB's own cluster that holds the extension (its superuser)."""
    return (
        f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{stack.ports['mongo_store']}/"
        + STORE_DATABASE
    )


def proxied(stack: Stack) -> bool:
    """Whether the projector's MongoDB link goes through toxiproxy."""
    return stack.network_faults and "mongo" not in stack.external


def own_mongo_store(stack: Stack) -> bool:
    """Whether DocumentDB runs here (no external MongoDB given)."""
    return "mongo" not in stack.external


# --------------------------------------------------------------------------- health probes


def http_ok(url: str) -> bool:
    """Whether the URL answers 200."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def postgres_ready(url: str) -> bool:
    """Whether PostgreSQL accepts a connection and answers a query."""
    import asyncpg

    async def probe() -> bool:
        conn = await asyncpg.connect(url, timeout=2)
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    return asyncio.run(probe())


def kafka_ready(bootstrap: str) -> bool:
    """Whether the Kafka cluster lists its topics."""
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
    """Whether the MongoDB server answers a ping."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(url, serverSelectionTimeoutMS=2000) as client:
        return bool(client.admin.command("ping").get("ok"))


# --------------------------------------------------------------------------- PostgreSQL


def postgres_command(
    stack: Stack, name: str, port: str, max_connections: int, *, logical: bool = False
) -> list[str]:
    """A private PostgreSQL cluster, listening on loopback only.

    With `logical`, the WAL carries logical decoding: change-data-capture peers such as the
    benchmark's Debezium read the outbox through a replication slot (pgoutput).
    """
    data = provision.cluster_dir(stack.run_dir, name) / "data"
    # PostgreSQL 17's defaults (10 replication slots, 10 WAL senders) are enough for a peer.
    replication = ["-c", "wal_level=logical"] if logical else []
    return [
        str(provision.postgres_bin() / "postgres"),
        *("-D", str(data), "-p", str(stack.ports[port])),
        *("-c", "listen_addresses=127.0.0.1"),
        *("-c", f"unix_socket_directories={data.parent / 'socket'}"),
        *("-c", f"max_connections={max_connections}", "-c", "shared_buffers=256MB"),
        *("-c", "logging_collector=off"),
        *replication,
    ]


def init_cluster(stack: Stack, name: str) -> None:
    """Install PostgreSQL if missing and initialize the part's cluster once."""
    provision.init_cluster(stack.run_dir, name, DB_USER, DB_PASSWORD)


def create_database(admin: str, name: str) -> None:
    """Create a database unless it exists."""
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


def cli_env(stack: Stack) -> dict[str, str]:
    """The environment of a one-off `command-service` run (migrate, ensure-topics)."""
    return {**stack.environ, **stack.env(), "COMMAND_TOPIC_PARTITIONS": topic_partitions(stack)}


# Least privilege on our own cluster: the migrator owns the schema, the command service and the
# relay connect as roles that only reach their tables (command_service.adapters.migrate grants
# them). DATABASE_URL in stack.env stays the cluster's superuser, for tests and tools.
MIGRATOR_ROLE = "catalog_migrator"
COMMAND_ROLE = "catalog_command"
RELAY_ROLE = "catalog_relay"


def role_url(stack: Stack, role: str) -> str:
    """The write model's database as `role` (on an external server: its one URL)."""
    if "postgres" in stack.external:
        return database_url(stack)
    return f"postgresql://{role}:{DB_PASSWORD}@127.0.0.1:{stack.ports['postgres']}/{DB_NAME}"


def bootstrap_roles(admin: str, database: str) -> None:
    """The three roles, and the database with everything in it owned by the migrator."""
    import asyncpg

    async def apply() -> None:
        conn = await asyncpg.connect(admin)
        try:
            for role in (MIGRATOR_ROLE, COMMAND_ROLE, RELAY_ROLE):
                if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'")
            await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {MIGRATOR_ROLE}')
        finally:
            await conn.close()
        # A stack created before the roles has its tables owned by the superuser: hand them over
        # (their identity sequences follow), or the migrator could neither alter nor grant.
        conn = await asyncpg.connect(admin.rsplit("/", 1)[0] + f"/{database}")
        try:
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for (table,) in await conn.fetch(
                """
                SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                   AND pg_get_userbyid(c.relowner) <> $1
                """,
                MIGRATOR_ROLE,
            ):
                await conn.execute(f'ALTER TABLE "{table}" OWNER TO {MIGRATOR_ROLE}')
        finally:
            await conn.close()

    asyncio.run(apply())


def create_and_migrate(stack: Stack) -> None:
    """The write model's database (on our own cluster) at the latest schema."""
    env = cli_env(stack)
    if "postgres" not in stack.external:
        create_database(admin_url(stack), DB_NAME)
        bootstrap_roles(admin_url(stack), DB_NAME)
        env["COMMAND_MIGRATE_DATABASE_URL"] = role_url(stack, MIGRATOR_ROLE)
    say("applying migrations")
    run([str(VENV_BIN / "command-service"), "migrate"], env=env, quiet=True)


# --------------------------------------------------------------------------- Kafka


def prepare_kafka(stack: Stack) -> None:
    """Kafka's jars, its configuration for this stack's ports, and its storage formatted once."""
    provision.fetch_kafka()
    run(
        [
            "bash",
            str(LOCAL / "kafka" / "kafka.sh"),
            "prepare",
            str(provision.kafka_libs()),
            str(stack.run_dir / "kafka" / "config"),
            str(stack.run_dir / "kafka" / "data"),
            str(stack.ports["kafka"]),
            str(stack.ports["kafka_controller"]),
        ],
        quiet=True,
    )


def reviews_topic(stack: Stack) -> str:
    """The reviews' events topic."""
    return stack.environ.get("REVIEWS_TOPIC", REVIEWS_TOPIC_DEFAULT)


def ensure_topics(stack: Stack) -> None:
    """Both events topics and their dead-letter topics."""
    run([str(VENV_BIN / "command-service"), "ensure-topics"], env=cli_env(stack), quiet=True)


def topic_partitions(stack: Stack) -> str:
    """How many partitions each events topic is created with (the same for both)."""
    return stack.environ.get("STACK_TOPIC_PARTITIONS", "6")


# --------------------------------------------------------------------------- DocumentDB


def store_socket_dir(stack: Stack) -> Path:
    """Where DocumentDB's cluster listens on a Unix socket (its gateway's system connection)."""
    return provision.cluster_dir(stack.run_dir, "mongo-store") / "socket"


def documentdb_postgres_command(stack: Stack) -> list[str]:
    """DocumentDB's own PostgreSQL cluster (upstream's settings, scripts/utils.sh): separate
    from the write model's, so stopping one side's database never takes the other side down."""
    command = postgres_command(stack, "mongo-store", "mongo_store", 200)
    command[0] = str(provision.documentdb_pg_bin() / "postgres")
    return [
        *command,
        *("-c", "shared_preload_libraries=pg_cron,pg_documentdb_core,pg_documentdb"),
        *("-c", f"cron.database_name={STORE_DATABASE}"),
        *("-c", "documentdb.enableBackgroundWorker=true"),
        *("-c", "documentdb.enableBackgroundWorkerJobs=true"),
        # pg_cron runs DocumentDB's jobs (index builds, TTL) in background workers rather than
        # over a connection that would need a password.
        *("-c", "cron.use_background_workers=on", "-c", "max_worker_processes=32"),
        *("-c", "unix_socket_permissions=0700"),
        # Where DocumentDB connects back to itself (some queries, index builds): the trusted
        # socket, since its default (TCP to localhost) would need a password.
        *("-c", f"documentdb.localhost_connection_string=host={store_socket_dir(stack)}"),
    ]


def prepare_documentdb_store(stack: Stack) -> None:
    """DocumentDB built and installed, and its cluster initialized once.

    The gateway checks a user's SCRAM proof itself, over its system connection, and then
    connects to PostgreSQL as that user without a password (as upstream runs it). So the
    cluster trusts its Unix socket, whose directory only the postgres OS user (and root, which
    runs the gateway) can enter; over TCP every role still needs its SCRAM-SHA-256 password.
    """
    provision.ensure_documentdb(provision.vendor_dir(stack.environ))
    provision.init_cluster(
        stack.run_dir, "mongo-store", DB_USER, DB_PASSWORD, bin_dir=provision.documentdb_pg_bin()
    )
    data = provision.cluster_dir(stack.run_dir, "mongo-store") / "data"
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    store_socket_dir(stack).chmod(0o700)


def store_admin(admin: str) -> None:
    """DocumentDB in the store's database, and the read store's admin user (the one that makes
    the others, through the gateway)."""
    import asyncpg

    async def apply() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS documentdb CASCADE")
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", STORE_ADMIN):
                # As upstream's scripts/build_and_start_gateway.sh makes its user.
                await conn.execute(
                    f"CREATE ROLE {STORE_ADMIN} LOGIN INHERIT PASSWORD '{STORE_PASSWORD}'"
                    " IN ROLE documentdb_admin_role CREATEROLE"
                )
        finally:
            await conn.close()

    asyncio.run(apply())


# The gateway's `createUser` takes exactly these role sets.
READ_WRITE_ROLES = [
    {"role": "clusterAdmin", "db": "admin"},
    {"role": "readWriteAnyDatabase", "db": "admin"},
]
READ_ONLY_ROLES = [{"role": "readAnyDatabase", "db": "admin"}]


def store_users(url: str) -> None:
    """The projector's user (reads and writes) and the query service's (reads: the server
    refuses its writes), made once through the gateway."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        known = {user["user"] for user in client.admin.command("usersInfo")["users"]}
        for user, roles in ((STORE_PROJECTOR, READ_WRITE_ROLES), (STORE_READER, READ_ONLY_ROLES)):
            if user not in known:
                client.admin.command("createUser", user, pwd=STORE_PASSWORD, roles=roles)


def documentdb_gateway_command(stack: Stack) -> list[str]:
    """DocumentDB's gateway with this stack's configuration."""
    return [
        str(provision.documentdb_gateway(provision.vendor_dir(stack.environ))),
        str(stack.run_dir / "documentdb" / "gateway.json"),
    ]


def prepare_documentdb_gateway(stack: Stack) -> None:
    """A self-signed certificate (a release build refuses to start without one; plain TCP is
    still accepted) and the gateway's configuration. The gateway itself is built by the store's
    provisioning, which it waits for (`needs`)."""
    directory = stack.run_dir / "documentdb"
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not (cert.exists() and key.exists()):
        run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"),
                *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
            ],
            quiet=True,
        )
    config = {
        "NodeHostName": "localhost",
        "ApplicationName": "catalog-documentdb-gateway",
        "BlockedRolePrefixes": ["documentdb", "citus", "pg", "internal_role"],
        "PostgresHostName": str(store_socket_dir(stack)),
        "PostgresPort": stack.ports["mongo_store"],
        "PostgresSystemUser": DB_USER,
        "PostgresDatabase": STORE_DATABASE,
        "GatewayListenPort": stack.ports["mongo"],
        "UseLocalHost": True,
        "EnforceSslTcp": False,
        "TransactionTimeoutSecs": 30,
        "CursorTimeoutSecs": 600,
        "PostgresCommandTimeoutSecs": 120,
        "CertificateOptions": {
            "CertType": "pem_file",
            "FilePath": str(cert),
            "KeyFilePath": str(key),
        },
    }
    (directory / "gateway.json").write_text(json.dumps(config, indent=2) + "\n")
    key.chmod(0o600)


# --------------------------------------------------------------------------- toxiproxy


def prepare_toxiproxy(stack: Stack) -> None:
    """toxiproxy built, with the projector's MongoDB proxy in its configuration."""
    provision.build_toxiproxy()
    proxies = [
        {
            "name": PROJECTOR_MONGO_PROXY,
            "listen": f"127.0.0.1:{stack.ports['mongo_proxy']}",
            "upstream": f"127.0.0.1:{stack.ports['mongo']}",
            "enabled": True,
        }
    ]
    (stack.run_dir / "toxiproxy.json").write_text(json.dumps(proxies, indent=2) + "\n")


# --------------------------------------------------------------------------- services


def crash_points(stack: Stack) -> bool:
    """Whether the services' crash points (service_runtime.faults) are armed."""
    return stack.environ.get("STACK_FAULT_INJECTION") == "1"


def arm_crash_points(stack: Stack) -> None:
    """The directory the fault-injection suite drops its triggers into."""
    if crash_points(stack):
        (stack.run_dir / "fault-triggers").mkdir(parents=True, exist_ok=True)


def services_env(stack: Stack) -> dict[str, str]:
    """What every service of the workspace is started with."""
    env = {
        **stack.env(),
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "COMMAND_PORT": str(stack.ports["command"]),
        "QUERY_PORT": str(stack.ports["query"]),
        "COMMAND_RELAY_METRICS_PORT": str(stack.ports["relay_metrics"]),
        "PROJECTOR_METRICS_PORT": str(stack.ports["projector_metrics"]),
        "COMMAND_TOPIC_PARTITIONS": topic_partitions(stack),
        "COMMAND_POOL_MAX_SIZE": str(COMMAND_POOL_PER_INSTANCE),
        **tracing_env(stack),
    }
    if crash_points(stack):
        env["CATALOG_FAULT_DIR"] = str(stack.run_dir / "fault-triggers")
    return env


def prepare_service(stack: Stack, own: Callable[[Stack], None]) -> None:
    """What every service needs before it starts, then what this one needs."""
    arm_crash_points(stack)
    own(stack)


def service(
    name: str,
    cli: str,
    *,
    port: tuple[str, int],
    probe: str,
    needs: tuple[str, ...],
    env: Callable[[Stack], Mapping[str, str]] = lambda stack: {},
    exports: Callable[[Stack], Mapping[str, str]] = lambda stack: {},
    provision: Callable[[Stack], None] = lambda stack: None,
    replica_of: str | None = None,
    enabled: Callable[[Stack], bool] = lambda stack: True,
) -> Part:
    """A service of the workspace run from its virtualenv, healthy when `probe` answers 200."""
    executable, *args = cli.split()
    port_key, default_port = port
    return Part(
        name,
        command=lambda stack: [str(VENV_BIN / executable), *args],
        health=lambda stack: http_ok(stack.url(port_key) + probe),
        ports={port_key: default_port},
        needs=needs,
        env=lambda stack: {**services_env(stack), **env(stack)},
        exports=exports,
        provision=lambda stack: prepare_service(stack, provision),
        stopwait=15,
        replica_of=replica_of,
        enabled=enabled,
    )


def projector_env(stack: Stack) -> dict[str, str]:
    """The projector's static group membership (the stack runs one), its own store user, and
    its MongoDB through toxiproxy when the stack injects faults."""
    port = "mongo_proxy" if proxied(stack) else "mongo"
    return {
        "PROJECTOR_GROUP_INSTANCE_ID": "projector-1",
        "PROJECTOR_MONGODB_URL": mongodb_url(stack, STORE_PROJECTOR, port),
    }


def query_env(stack: Stack) -> dict[str, str]:
    """The query service reads as the store's read-only user."""
    return {"QUERY_MONGODB_URL": mongodb_url(stack, STORE_READER)}


# --------------------------------------------------------------------------- relays

# `make up` runs STACK_RELAYS relays (2 by default, so the shards' hand-over between relays is
# exercised every day), named relay, relay-2, ...; `stackctl stop relay` stops every one.
RELAYS_DEFAULT = 2
MAX_RELAYS = 4


def relay_count(stack: Stack) -> int:
    """How many relays this stack runs."""
    value = stack.environ.get("STACK_RELAYS") or str(RELAYS_DEFAULT)
    if not value.isdigit() or not 1 <= int(value) <= MAX_RELAYS:
        raise StackError(
            f"STACK_RELAYS must be a whole number from 1 to {MAX_RELAYS}, not {value!r}"
        )
    return int(value)


def relay_metrics_port(number: int) -> tuple[str, int]:
    """The port key and default port of relay `number`'s metrics (relay 1: 18011)."""
    if number == 1:
        return "relay_metrics", 18011
    return f"relay_{number}_metrics", 18011 + number


def relay(number: int) -> Part:
    """Relay `number` of the stack (1 is `relay`, then `relay-2`, ...)."""
    port_key, default_port = relay_metrics_port(number)
    return service(
        "relay" if number == 1 else f"relay-{number}",
        "command-service relay",
        port=(port_key, default_port),
        probe="/metrics",
        needs=("postgres", "kafka"),
        env=lambda stack: {
            "COMMAND_RELAY_DATABASE_URL": role_url(stack, RELAY_ROLE),
            "COMMAND_RELAY_METRICS_PORT": str(stack.ports[port_key]),
        },
        exports=(
            (lambda stack: {"RELAY_METRICS_URL": stack.url("relay_metrics") + "/metrics"})
            if number == 1
            else (lambda stack: {})
        ),
        replica_of=None if number == 1 else "relay",
        enabled=lambda stack: relay_count(stack) >= number,
    )


# --------------------------------------------------------------------------- tokens


def keys_dir(stack: Stack) -> Path:
    """The development signing key, its JWKS and DEV_TOKEN (never committed: under the run
    directory, the key readable by its owner only)."""
    return stack.run_dir / "keys"


# Parts are provisioned side by side while stack.env is rendered: one writer of the key at a time.
_credentials = threading.Lock()


def issue_dev_token(stack: Stack) -> None:
    """The signing key (made once), its JWKS for the command service, a fresh DEV_TOKEN."""
    with _credentials:
        ensure_dev_credentials(keys_dir(stack))


def token_exports(stack: Stack) -> dict[str, str]:
    """What clients of the stack need to call the command API and to mint more tokens."""
    token_file = keys_dir(stack) / TOKEN_FILE
    with _credentials:
        if not token_file.exists():
            ensure_dev_credentials(keys_dir(stack))
    return {
        "DEV_TOKEN": token_file.read_text().strip(),
        "SIGNING_KEY_FILE": str(keys_dir(stack) / KEY_FILE),
        "JWT_ISSUER": DEV_ISSUER,
    }


def command_env(stack: Stack, port: str) -> dict[str, str]:
    """A command-service process: its port, its database role, the JWKS it trusts."""
    return {
        "COMMAND_PORT": str(stack.ports[port]),
        "COMMAND_DATABASE_URL": role_url(stack, COMMAND_ROLE),
        "COMMAND_JWKS_FILE": str(keys_dir(stack) / JWKS_FILE),
        "COMMAND_JWT_ISSUER": DEV_ISSUER,
    }


# --------------------------------------------------------------------------- gateway


def nginx_dir(stack: Stack) -> Path:
    """nginx's prefix directory: its configuration and temporary files."""
    return stack.run_dir / "nginx"


# Commands per second and burst per client address at the gateway. Generous enough for every
# test from one address (schemathesis, 50 concurrent adjustments, the full fault suite's ~80
# commands/s and its catch-up after a stall), low enough that a burst through two command
# processes exhausts it within seconds on a loaded machine; the benchmark raises both.
GATEWAY_COMMAND_RATE_DEFAULT = 200
GATEWAY_COMMAND_BURST_DEFAULT = 400


def gateway_command_limit(stack: Stack) -> tuple[int, int]:
    """The gateway's per-client command rate (requests/s) and burst."""
    limits = []
    for variable, default in (
        ("STACK_GATEWAY_COMMAND_RATE", GATEWAY_COMMAND_RATE_DEFAULT),
        ("STACK_GATEWAY_COMMAND_BURST", GATEWAY_COMMAND_BURST_DEFAULT),
    ):
        value = stack.environ.get(variable) or str(default)
        if not value.isdigit() or int(value) < 1:
            raise StackError(f"{variable} must be a positive whole number, not {value!r}")
        limits.append(int(value))
    return limits[0], limits[1]


def configure_nginx(stack: Stack) -> None:
    """nginx installed, and its configuration routing to this stack's services."""
    rate, burst = gateway_command_limit(stack)
    provision.ensure_nginx()
    directory = nginx_dir(stack)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    template = (LOCAL / "nginx" / "nginx.conf.tmpl").read_text()
    (directory / "nginx.conf").write_text(
        template.replace("{run_dir}", str(stack.run_dir))
        .replace("{repo}", str(REPO))
        .replace("{command_port}", str(stack.ports["command"]))
        .replace("{command_2_port}", str(stack.ports["command_2"]))
        .replace("{query_port}", str(stack.ports["query"]))
        .replace("{command_rate}", str(rate))
        .replace("{command_burst}", str(burst))
    )
    (directory / "gateway-listen.conf").write_text(
        f"listen 127.0.0.1:{stack.ports['gateway']} reuseport backlog=4096;\n"
    )


def wait_for_routing(stack: Stack) -> None:
    """The gateway reaches the query service and its store."""
    # By the cheapest read, which needs no product at all.
    wait_until(
        "gateway routing",
        lambda: http_ok(stack.url("gateway") + "/api/v1/categories"),
        30,
        stack,
        "gateway",
    )


# --------------------------------------------------------------------------- observability

# Where Prometheus finds the alert rules it evaluates (the Kubernetes PrometheusRule holds the
# same groups).
ALERT_RULES = REPO / "deploy" / "observability" / "prometheus" / "rules.yaml"


def trace_sample_ratio(stack: Stack) -> str:
    """The share of new traces kept (STACK_TRACE_SAMPLE_RATIO, every one by default)."""
    value = stack.environ.get("STACK_TRACE_SAMPLE_RATIO") or "1"
    try:
        ratio = float(value)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise StackError(f"STACK_TRACE_SAMPLE_RATIO must be between 0 and 1, not {value!r}")
    return value


def tracing_env(stack: Stack) -> dict[str, str]:
    """What makes a service export its spans to this stack's Jaeger (service_runtime.telemetry)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.url("jaeger_otlp"),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": trace_sample_ratio(stack),
        # Spans reach Jaeger within a second of their end rather than the default five.
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }


def prepare_jaeger(stack: Stack) -> None:
    """Jaeger built, and its configuration: in-memory storage, OTLP over HTTP, the query API,
    every port loopback and our own (its defaults bind every interface on well-known ports)."""
    provision.build_jaeger()
    loopback = "127.0.0.1:{}".format
    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "basic",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "127.0.0.1",
                                        "port": stack.ports["jaeger_metrics"],
                                    }
                                }
                            }
                        }
                    ],
                },
                "logs": {"level": "warn"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": 100_000}}}},
            "jaeger_query": {
                "storage": {"traces": "memory"},
                "http": {"endpoint": loopback(stack.ports["jaeger"])},
                "grpc": {"endpoint": loopback(stack.ports["jaeger_grpc"])},
            },
        },
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": loopback(stack.ports["jaeger_otlp"])}}}
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
    }
    # JSON is YAML: the collector's configuration loader reads it as is.
    (stack.run_dir / "jaeger.yaml").write_text(json.dumps(config, indent=2) + "\n")


def scrape_targets(stack: Stack) -> dict[str, list[str]]:
    """Every part that serves Prometheus metrics, by job."""
    address = "127.0.0.1:{}".format
    return {
        "command": [address(stack.ports["command"]), address(stack.ports["command_2"])],
        "relay": [
            address(stack.ports[relay_metrics_port(number)[0]])
            for number in range(1, relay_count(stack) + 1)
        ],
        "projector": [address(stack.ports["projector_metrics"])],
        "query": [address(stack.ports["query"])],
        "jaeger": [address(stack.ports["jaeger_metrics"])],
        "prometheus": [address(stack.ports["prometheus"])],
    }


def prepare_prometheus(stack: Stack) -> None:
    """Prometheus built, scraping every part every 5 s and evaluating the alert rules."""
    provision.ensure_prometheus()
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in scrape_targets(stack).items()
        ],
    }
    (stack.run_dir / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n")
    (stack.run_dir / "prometheus").mkdir(exist_ok=True)


# --------------------------------------------------------------------------- the table

# Default ports stay clear of 5432, 9092, 27017 and 8080, which a developer machine may be using,
# and below 32768 (see stack_engine.WELL_KNOWN_PORTS and EPHEMERAL_PORTS).
PARTS: tuple[Part, ...] = (
    Part(
        "postgres",
        command=lambda stack: postgres_command(stack, "postgres", "postgres", 300, logical=True),
        health=lambda stack: postgres_ready(admin_url(stack)),
        ports={"postgres": 15432},
        external=("STACK_DATABASE_URL",),
        provision=lambda stack: init_cluster(stack, "postgres"),
        ready=create_and_migrate,
        exports=lambda stack: {"DATABASE_URL": database_url(stack)},
        run_as="postgres",  # PostgreSQL refuses to run as root
        stopsignal="INT",
        stopwait=30,
    ),
    Part(
        "kafka",
        command=lambda stack: [
            *("bash", str(LOCAL / "kafka" / "kafka.sh"), "run"),
            *(str(provision.kafka_libs()), str(stack.run_dir / "kafka" / "config")),
        ],
        health=lambda stack: kafka_ready(kafka_bootstrap(stack)),
        health_timeout=120,
        ports={"kafka": 19092, "kafka_controller": 19093},
        env=lambda stack: {
            "KAFKA_HEAP_OPTS": stack.environ.get("STACK_KAFKA_HEAP", "-Xms256m -Xmx768m")
        },
        external=("STACK_KAFKA_BOOTSTRAP_SERVERS",),
        provision=prepare_kafka,
        ready=ensure_topics,
        exports=lambda stack: {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap(stack),
            "REVIEWS_TOPIC": reviews_topic(stack),
        },
        stopwait=30,
    ),
    Part(
        "mongo",
        command=documentdb_gateway_command,
        health=lambda stack: mongo_ready(mongodb_url(stack)),
        ports={"mongo": 17017},
        needs=("mongo-store",),
        external=("STACK_MONGODB_URL", "MONGODB_URL"),
        provision=prepare_documentdb_gateway,
        ready=lambda stack: store_users(mongodb_url(stack)),
        stopsignal="INT",  # it shuts down on SIGINT (Ctrl+C) only
        exports=lambda stack: {"MONGODB_URL": mongodb_url(stack), "MONGODB_DATABASE": "catalog"},
        stopwait=15,
    ),
    # Before the services, so their first spans find it.
    Part(
        "jaeger",
        command=lambda stack: [
            str(provision.jaeger_binary()),
            "--config",
            f"file:{stack.run_dir / 'jaeger.yaml'}",
        ],
        health=lambda stack: http_ok(stack.url("jaeger") + "/api/services"),
        health_timeout=60,
        ports={
            "jaeger": 18686,
            "jaeger_grpc": 18685,
            "jaeger_otlp": 18318,
            "jaeger_metrics": 18888,
        },
        provision=prepare_jaeger,
        exports=lambda stack: {"JAEGER_URL": stack.url("jaeger")},
    ),
    service(
        "command",
        "command-service serve",
        port=("command", 18001),
        probe="/readyz",
        needs=("postgres",),
        env=lambda stack: command_env(stack, "command"),
        exports=lambda stack: {"COMMAND_URL": stack.url("command"), **token_exports(stack)},
        provision=issue_dev_token,
    ),
    service(
        "command-2",
        "command-service serve",
        port=("command_2", 18003),
        probe="/readyz",
        needs=("postgres",),
        env=lambda stack: command_env(stack, "command_2"),
        replica_of="command",
    ),
    *(relay(number) for number in range(1, MAX_RELAYS + 1)),
    service(
        "projector",
        "projector run",
        port=("projector_metrics", 18012),
        probe="/metrics",
        needs=("kafka", "mongo", "toxiproxy"),
        env=projector_env,
        exports=lambda stack: {
            "PROJECTOR_METRICS_URL": stack.url("projector_metrics") + "/metrics"
        },
    ),
    service(
        "query",
        "query-service serve",
        port=("query", 18002),
        probe="/readyz",
        needs=("mongo",),
        env=query_env,
        exports=lambda stack: {"QUERY_URL": stack.url("query")},
    ),
    Part(
        "gateway",
        command=lambda stack: [
            *(provision.nginx_bin(), "-p", str(nginx_dir(stack))),
            *("-c", str(nginx_dir(stack) / "nginx.conf")),
        ],
        health=lambda stack: http_ok(stack.url("gateway") + "/healthz"),
        health_timeout=30,
        ports={"gateway": 18080},
        needs=("command", "command-2", "query"),
        provision=configure_nginx,
        ready=wait_for_routing,
        exports=lambda stack: {"GATEWAY_URL": stack.url("gateway")},
        stopsignal="QUIT",
    ),
    # DocumentDB: its PostgreSQL cluster, under the gateway that is the `mongo` part.
    Part(
        "mongo-store",
        command=documentdb_postgres_command,
        health=lambda stack: postgres_ready(store_admin_url(stack)),
        ports={"mongo_store": 17432},
        enabled=own_mongo_store,
        provision=prepare_documentdb_store,
        ready=lambda stack: store_admin(store_admin_url(stack)),
        run_as="postgres",
        stopsignal="INT",
        stopwait=30,
    ),
    Part(
        "toxiproxy",
        command=lambda stack: [
            *(str(provision.toxiproxy_binary()), "-host", "127.0.0.1"),
            *("-port", str(stack.ports["toxiproxy"])),
            *("-config", str(stack.run_dir / "toxiproxy.json")),
        ],
        health=lambda stack: http_ok(stack.url("toxiproxy") + "/version"),
        health_timeout=30,
        ports={"toxiproxy": 18474, "mongo_proxy": 17018},
        needs=("mongo",),
        enabled=proxied,
        provision=prepare_toxiproxy,
        exports=lambda stack: {"TOXIPROXY_URL": stack.url("toxiproxy")},
    ),
    Part(
        "prometheus",
        command=lambda stack: [
            str(provision.prometheus_binary()),
            f"--config.file={stack.run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={stack.run_dir / 'prometheus'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{stack.ports['prometheus']}",
            "--log.level=warn",
        ],
        health=lambda stack: http_ok(stack.url("prometheus") + "/-/ready"),
        health_timeout=60,
        ports={"prometheus": 19090},
        provision=prepare_prometheus,
        exports=lambda stack: {"PROMETHEUS_URL": stack.url("prometheus")},
    ),
)
