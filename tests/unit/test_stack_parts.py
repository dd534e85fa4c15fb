"""The local stack's table of parts and its engine, with no server and no process started."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import jwt
import pytest
from jwt import PyJWKSet

# deploy/local holds scripts (stackctl runs stack.py, which imports its siblings), not a package.
LOCAL = str(Path(__file__).resolve().parents[2] / "deploy" / "local")
if LOCAL not in sys.path:
    sys.path.insert(0, LOCAL)

import provision  # noqa: E402
import stack_engine  # noqa: E402
import stack_parts  # noqa: E402
from stack_engine import Part, Stack, StackError  # noqa: E402
from stack_parts import PARTS  # noqa: E402

from service_runtime.tokens import SigningKey  # noqa: E402

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
    "relay_2_metrics": 18013,
    "relay_3_metrics": 18014,
    "relay_4_metrics": 18015,
    "jaeger": 18686,
    "jaeger_grpc": 18685,
    "jaeger_otlp": 18318,
    "jaeger_metrics": 18888,
    "prometheus": 19090,
}
STACK_ENV_KEYS = {
    "JAEGER_URL",
    "PROMETHEUS_URL",
    "RELAY_METRICS_URL",
    "PROJECTOR_METRICS_URL",
    "DEV_TOKEN",
    "SIGNING_KEY_FILE",
    "JWT_ISSUER",
    "GATEWAY_URL",
    "COMMAND_URL",
    "QUERY_URL",
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "EVENTS_TOPIC",
    "REVIEWS_TOPIC",
    "STACK_DIR",
}


@pytest.fixture(autouse=True)
def machine(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Installed tools at fixed places, and every port free except those a test marks busy."""
    busy: set[int] = set()
    monkeypatch.setattr(provision, "postgres_bin", lambda: Path("/usr/lib/postgresql/17/bin"))
    monkeypatch.setattr(provision, "nginx_bin", lambda: "/usr/sbin/nginx")
    monkeypatch.setattr(stack_engine, "port_free", lambda port: port not in busy)
    return busy


def make_stack(tmp_path: Path, parts: Sequence[Part] = PARTS, /, **environ: str) -> Stack:
    return stack_engine.load_stack(parts, {"STACK_DIR": str(tmp_path / "stack"), **environ})


def programs(stack: Stack) -> dict[str, Mapping[str, str]]:
    """supervisord's program sections by part name."""
    config = configparser.RawConfigParser()
    config.read_string(stack_engine.supervisord_conf(stack))
    return {
        section.removeprefix("program:"): config[section]
        for section in config.sections()
        if section.startswith("program:")
    }


def environment(program: Mapping[str, str]) -> dict[str, str]:
    """A program's `environment=` line as a dict."""
    pairs = re.findall(r'(\w+)="([^"]*)"', program.get("environment", ""))
    return {key: value.replace("%%", "%") for key, value in pairs}


def part(name: str, *needs: str) -> Part:
    return Part(name, command=lambda stack: [name], health=lambda stack: True, needs=needs)


# --------------------------------------------------------------------------- the table


def test_the_order_puts_every_part_after_the_parts_it_needs() -> None:
    order = [p.name for p in stack_engine.dependency_order(PARTS)]
    assert sorted(order) == sorted(p.name for p in PARTS)
    for p in PARTS:
        for need in p.needs:
            assert order.index(need) < order.index(p.name), (need, p.name)


def test_a_cycle_is_refused() -> None:
    with pytest.raises(StackError, match=r"parts need each other: a -> b -> a"):
        stack_engine.dependency_order([part("a", "b"), part("b", "a"), part("c")])


def test_an_unknown_dependency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="relay needs zookeeper, which is not a part"):
        make_stack(tmp_path, [part("relay", "zookeeper")])


def test_two_parts_with_one_name_or_one_port_key_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="same name"):
        make_stack(tmp_path, [part("a"), part("a")])
    twice = [Part(n, lambda s: [], lambda s: True, ports={"p": 1}) for n in ("a", "b")]
    with pytest.raises(StackError, match="port key p belongs to two parts"):
        make_stack(tmp_path, twice)


def test_every_part_has_a_health_check_and_its_own_ports() -> None:
    for p in PARTS:
        assert callable(p.health), p.name
        assert p.health_timeout > 0, p.name
    assert stack_engine.default_ports(PARTS) == DEFAULT_PORTS


def test_command_names_both_command_processes(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    assert stack.processes("command") == ("command", "command-2")
    assert stack.processes("command-2") == ("command-2",)
    assert stack.processes("relay") == ("relay", "relay-2")
    assert make_stack(tmp_path, STACK_RELAYS="1").processes("relay") == ("relay",)


# --------------------------------------------------------------------------- rendering


def test_each_supervised_part_is_a_program_with_its_command_and_environment(
    tmp_path: Path,
) -> None:
    stack = make_stack(tmp_path)
    rendered = programs(stack)
    assert list(rendered) == [p.name for p in stack.supervised()]
    assert set(rendered) == {
        "postgres", "kafka", "mongo-store", "mongo",
        "command", "command-2", "relay", "relay-2", "projector", "query", "gateway",
        "jaeger", "prometheus",
    }  # fmt: skip
    for p in stack.supervised():
        assert shlex.split(rendered[p.name]["command"]) == list(p.command(stack))
        assert environment(rendered[p.name]) == dict(p.env(stack))
        assert rendered[p.name]["stdout_logfile"] == str(stack.logs / f"{p.name}.log")
    command = environment(rendered["command"])
    assert command["COMMAND_PORT"] == "18001"
    assert command["DATABASE_URL"] == "postgresql://catalog:catalog@127.0.0.1:15432/catalog"
    assert environment(rendered["command-2"])["COMMAND_PORT"] == "18003"
    assert "CATALOG_FAULT_DIR" not in command
    assert rendered["query"]["command"].endswith("/query-service serve")
    assert environment(rendered["kafka"]) == {"KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m"}
    postgres = shlex.split(rendered["postgres"]["command"])
    data = str(stack.run_dir / "postgres" / "data")
    assert postgres[:5] == ["/usr/lib/postgresql/17/bin/postgres", "-D", data, "-p", "15432"]
    assert rendered["postgres"]["stopsignal"] == "INT"
    # The write model's WAL feeds the benchmark's Debezium peer; the read store needs none.
    assert "wal_level=logical" in postgres
    assert "wal_level=logical" not in shlex.split(rendered["mongo-store"]["command"])


def test_every_service_exports_its_spans_to_the_stacks_jaeger(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    rendered = programs(stack)
    for name in ("command", "command-2", "relay", "projector", "query"):
        env = environment(rendered[name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:18318", name
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio", name
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "1", name
    sampled = make_stack(tmp_path, STACK_TRACE_SAMPLE_RATIO="0.01")
    assert environment(programs(sampled)["relay"])["OTEL_TRACES_SAMPLER_ARG"] == "0.01"
    for wrong in ("2", "-0.5", "some"):
        with pytest.raises(StackError, match="STACK_TRACE_SAMPLE_RATIO"):
            stack_parts.trace_sample_ratio(make_stack(tmp_path, STACK_TRACE_SAMPLE_RATIO=wrong))


def test_jaeger_and_prometheus_listen_on_loopback_ports_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision, "build_jaeger", lambda: None)
    monkeypatch.setattr(provision, "ensure_prometheus", lambda: None)
    stack = make_stack(tmp_path)
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    stack_parts.prepare_jaeger(stack)
    jaeger = json.loads((stack.run_dir / "jaeger.yaml").read_text())
    endpoints = [
        jaeger["extensions"]["jaeger_query"]["http"]["endpoint"],
        jaeger["extensions"]["jaeger_query"]["grpc"]["endpoint"],
        jaeger["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
    ]
    assert endpoints == ["127.0.0.1:18686", "127.0.0.1:18685", "127.0.0.1:18318"]
    assert set(jaeger["receivers"]["otlp"]["protocols"]) == {"http"}
    stack_parts.prepare_prometheus(stack)
    prometheus = json.loads((stack.run_dir / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == [str(stack_parts.ALERT_RULES)]
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    assert jobs == {
        "command": ["127.0.0.1:18001", "127.0.0.1:18003"],
        "relay": ["127.0.0.1:18011", "127.0.0.1:18013"],
        "projector": ["127.0.0.1:18012"],
        "query": ["127.0.0.1:18002"],
        "jaeger": ["127.0.0.1:18888"],
        "prometheus": ["127.0.0.1:19090"],
    }
    command = programs(stack)["prometheus"]["command"]
    assert "--web.listen-address=127.0.0.1:19090" in shlex.split(command)


def test_postgres_runs_as_the_postgres_user_under_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    rendered = programs(make_stack(tmp_path))
    assert rendered["postgres"]["user"] == "postgres"
    assert rendered["mongo-store"]["user"] == "postgres"
    assert "user" not in rendered["command"]


def test_stack_env_has_the_documented_keys(tmp_path: Path) -> None:
    env = make_stack(tmp_path).env()
    assert set(env) == STACK_ENV_KEYS
    assert env["GATEWAY_URL"] == "http://127.0.0.1:18080"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["MONGODB_URL"] == (
        "mongodb://catalog_admin:catalog@127.0.0.1:17017/"
        "?authMechanism=SCRAM-SHA-256&directConnection=true"
    )
    assert env["STACK_DIR"] == str(tmp_path / "stack")


def test_the_stack_trusts_its_own_development_key(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    env = stack.env()
    keys = stack.run_dir / "keys"
    assert env["SIGNING_KEY_FILE"] == str(keys / "signing-key.pem")
    assert (keys / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    rendered = programs(stack)
    for name in ("command", "command-2"):
        assert environment(rendered[name])["COMMAND_JWKS_FILE"] == str(keys / "jwks.json")
    key = SigningKey.load(keys / "signing-key.pem")
    claims = jwt.decode(
        env["DEV_TOKEN"],
        key=PyJWKSet.from_json((keys / "jwks.json").read_text())[key.kid].key,
        algorithms=["ES256"],
        audience="catalog-api",
        issuer=env["JWT_ISSUER"],
    )
    assert (claims["sub"], claims["scope"]) == ("dev", "catalog:write catalog:moderate")
    # The key is kept: the next `up` signs with the same one.
    assert SigningKey.ensure(keys).kid == key.kid


def test_the_services_connect_as_their_own_postgres_roles(tmp_path: Path) -> None:
    """The command processes and the relay each get their role; stack.env keeps the owner's."""
    stack = make_stack(tmp_path)
    rendered = programs(stack)
    for name in ("command", "command-2"):
        assert environment(rendered[name])["COMMAND_DATABASE_URL"] == (
            "postgresql://catalog_command:catalog@127.0.0.1:15432/catalog"
        )
    relay = environment(rendered["relay"])
    assert relay["COMMAND_RELAY_DATABASE_URL"] == (
        "postgresql://catalog_relay:catalog@127.0.0.1:15432/catalog"
    )
    assert "COMMAND_DATABASE_URL" not in relay
    # Tests and tools create databases and read every table with it.
    assert stack.env()["DATABASE_URL"] == "postgresql://catalog:catalog@127.0.0.1:15432/catalog"
    external = make_stack(tmp_path / "ext", STACK_DATABASE_URL="postgresql://u:p@db:5432/c")
    rendered = programs(external)
    assert environment(rendered["command"])["COMMAND_DATABASE_URL"] == "postgresql://u:p@db:5432/c"
    assert environment(rendered["relay"])["COMMAND_RELAY_DATABASE_URL"] == (
        "postgresql://u:p@db:5432/c"
    )


def test_toxiproxy_only_with_fault_injection(tmp_path: Path) -> None:
    plain = make_stack(tmp_path / "plain")
    assert "toxiproxy" not in programs(plain)
    assert "TOXIPROXY_URL" not in plain.env()

    faults = make_stack(tmp_path / "faults", STACK_FAULT_INJECTION="1")
    rendered = programs(faults)
    assert "toxiproxy" in rendered
    assert faults.env()["TOXIPROXY_URL"] == "http://127.0.0.1:18474"
    projector = environment(rendered["projector"])
    assert projector["PROJECTOR_MONGODB_URL"].startswith(
        "mongodb://catalog_projector:catalog@127.0.0.1:17018/"
    )
    assert projector["CATALOG_FAULT_DIR"] == str(faults.run_dir / "fault-triggers")
    query = environment(rendered["query"])
    assert query["QUERY_MONGODB_URL"].startswith(
        "mongodb://catalog_reader:catalog@127.0.0.1:17017/"
    )
    order = [p.name for p in faults.active()]
    assert order.index("mongo") < order.index("toxiproxy") < order.index("projector")


@pytest.mark.parametrize("variable", ["STACK_MONGODB_URL", "MONGODB_URL"])
def test_an_external_mongodb_replaces_documentdb_and_its_store(
    tmp_path: Path, variable: str
) -> None:
    url = "mongodb://db.example:27017/"
    stack = make_stack(tmp_path, **{variable: url, "STACK_FAULT_INJECTION": "1"})
    rendered = programs(stack)
    assert not {"mongo", "mongo-store", "toxiproxy"} & set(rendered)
    assert stack.env()["MONGODB_URL"] == url
    assert environment(rendered["projector"])["PROJECTOR_MONGODB_URL"] == url
    assert environment(rendered["query"])["QUERY_MONGODB_URL"] == url
    assert "mongo" in [p.name for p in stack.active()]  # still waited for


def test_external_postgres_and_kafka_are_not_run(tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path,
        STACK_DATABASE_URL="postgresql://u:p@db.example:5432/catalog",
        STACK_KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092",
    )
    assert not {"postgres", "kafka"} & set(programs(stack))
    assert stack.env()["DATABASE_URL"] == "postgresql://u:p@db.example:5432/catalog"
    assert stack.env()["KAFKA_BOOTSTRAP_SERVERS"] == "kafka.example:9092"


def test_documentdb_runs_its_gateway_over_its_own_cluster(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    rendered = programs(stack)
    store = rendered["mongo-store"]["command"]
    assert store.startswith("/usr/lib/postgresql/15/bin/postgres ")
    assert "shared_preload_libraries=pg_cron,pg_documentdb_core,pg_documentdb" in store
    assert "cron.use_background_workers=on" in store
    gateway = rendered["mongo"]["command"].split()
    assert gateway[0].endswith("/gateway/documentdb_gateway")
    assert gateway[1] == str(stack.run_dir / "documentdb" / "gateway.json")
    assert rendered["mongo"]["stopsignal"] == "INT"
    order = [p.name for p in stack.active()]
    assert order.index("mongo-store") < order.index("mongo") < order.index("query")
    url = stack.env()["MONGODB_URL"]
    assert url.startswith("mongodb://catalog_admin:catalog@127.0.0.1:17017/")
    assert "authMechanism=SCRAM-SHA-256" in url


def test_the_vendor_directory_is_a_setting(tmp_path: Path) -> None:
    assert provision.vendor_dir({}) == (stack_engine.REPO.parent / "shared" / "vendor").resolve()
    assert provision.vendor_dir({"STACK_VENDOR_DIR": str(tmp_path)}) == tmp_path.resolve()
    with pytest.raises(StackError, match="STACK_VENDOR_DIR"):
        provision.documentdb_key(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  documentdb-x.tar.gz\n")
    first = provision.documentdb_key(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("1" * 64 + "  documentdb-x.tar.gz\n")
    assert provision.documentdb_key(tmp_path) != first  # keyed by the archives' checksums


def test_stack_relays_chooses_how_many_relays_run(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, STACK_RELAYS="3")
    rendered = programs(stack)
    assert {name for name in rendered if name.startswith("relay")} == {
        "relay",
        "relay-2",
        "relay-3",
    }
    for name, port in (("relay", "18011"), ("relay-2", "18013"), ("relay-3", "18014")):
        assert rendered[name]["command"] == f"{stack_engine.VENV_BIN}/command-service relay"
        env = environment(rendered[name])
        assert env["COMMAND_RELAY_METRICS_PORT"] == port, name
        assert env["COMMAND_RELAY_DATABASE_URL"].startswith("postgresql://catalog_relay:"), name
    order = [p.name for p in stack.active()]
    assert order.index("kafka") < order.index("relay-3")
    assert stack.processes("relay") == ("relay", "relay-2", "relay-3")
    assert stack.env()["RELAY_METRICS_URL"] == "http://127.0.0.1:18011/metrics"
    for wrong in ("0", "5", "two"):
        with pytest.raises(StackError, match="STACK_RELAYS"):
            make_stack(tmp_path, STACK_RELAYS=wrong).active()


# --------------------------------------------------------------------------- ports and state


def test_the_offset_shifts_every_port(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, STACK_PORT_OFFSET="1000")
    assert dict(stack.ports) == {key: port + 1000 for key, port in DEFAULT_PORTS.items()}


def test_the_offset_never_lands_on_a_well_known_port(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, STACK_PORT_OFFSET="10000")
    assert not set(stack.ports.values()) & stack_engine.WELL_KNOWN_PORTS
    assert len(set(stack.ports.values())) == len(stack.ports)
    assert all(port < stack_engine.EPHEMERAL_PORTS for port in stack.ports.values())
    # 27017, 27018 and 27019 are MongoDB's; DocumentDB and the proxy take the next ones.
    assert stack.ports["mongo"] == 27020
    assert stack.ports["mongo_proxy"] == 27021
    assert stack.ports["postgres"] == 25432
    stack_engine.save_stack(stack)
    state = json.loads((stack.run_dir / "stack.json").read_text())
    assert state["ports"]["mongo"] == 27020
    assert make_stack(tmp_path).ports == state["ports"]  # found again without the offset


def test_a_taken_port_moves_to_the_next_free_one(tmp_path: Path, machine: set[int]) -> None:
    machine.update({15432, 15433, 18080})
    stack = make_stack(tmp_path)
    assert stack.ports["postgres"] == 15434
    assert stack.ports["gateway"] == 18081


def test_no_free_port_below_the_ephemeral_range_is_an_error(
    tmp_path: Path, machine: set[int]
) -> None:
    machine.update(range(32000, 32768))
    with pytest.raises(StackError, match="no free port for postgres below the ephemeral range"):
        make_stack(tmp_path, STACK_PORT_OFFSET=str(32000 - 15432))


def test_an_explicit_port_is_taken_as_given(tmp_path: Path, machine: set[int]) -> None:
    assert make_stack(tmp_path / "a", STACK_PORT_GATEWAY="28080").ports["gateway"] == 28080
    machine.add(28080)
    with pytest.raises(StackError, match=r"port 28080 \(STACK_PORT_GATEWAY\) is in use"):
        make_stack(tmp_path / "b", STACK_PORT_GATEWAY="28080")


def test_a_stack_saved_before_keeps_its_ports_and_servers(tmp_path: Path) -> None:
    saved = {key: port + 7 for key, port in DEFAULT_PORTS.items()}
    (tmp_path / "stack").mkdir()
    state = {"ports": saved, "external": {"kafka": "k:9092"}, "topic": "t.v1"}
    (tmp_path / "stack" / "stack.json").write_text(json.dumps(state))
    stack = make_stack(tmp_path, STACK_PORT_OFFSET="10000", STACK_FAULT_INJECTION="1")
    assert dict(stack.ports) == saved
    assert stack.external == {"kafka": "k:9092"}
    assert stack.topic == "t.v1"
    assert not stack.network_faults
    stack_engine.save_stack(stack)
    rewritten = json.loads((stack.run_dir / "stack.json").read_text())
    assert rewritten == {**state, "network_faults": False}


def test_a_stack_of_an_older_layout_keeps_its_ports_and_gets_the_new_ones(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    state = {"ports": {"postgres": 15500}, "external": {}, "topic": "t"}
    (tmp_path / "stack" / "stack.json").write_text(json.dumps(state))
    stack = make_stack(tmp_path)
    assert stack.ports["postgres"] == 15500
    assert stack.ports["gateway"] == 18080


# --------------------------------------------------------------------------- waiting


def test_a_wait_returns_once_the_check_succeeds(tmp_path: Path) -> None:
    answers: Iterator[Exception | bool] = iter([ConnectionRefusedError("refused"), False, True])

    def check() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    stack_engine.wait_until("kafka", check, 5, make_stack(tmp_path), "kafka")


def test_a_wait_that_times_out_names_the_last_error_and_the_log(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)

    def refused() -> bool:
        raise ConnectionRefusedError("127.0.0.1:17017: Connection refused")

    expected = (
        r"^mongo not healthy after 1s \(ConnectionRefusedError: 127\.0\.0\.1:17017: "
        rf"Connection refused\); see {re.escape(str(stack.logs))}/mongo\.log"
        r"\n  supervisord is not running$"
    )
    with pytest.raises(StackError, match=expected):
        stack_engine.wait_until("mongo", refused, 0.6, stack, "mongo")


def test_a_timed_out_part_is_shown_with_its_program_state_and_last_log_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(tmp_path)
    stack.logs.mkdir(parents=True)
    (stack.logs / "mongo.log").write_text("".join(f"line {n}\n" for n in range(40)))
    asked: list[tuple[str, ...]] = []

    def ctl(_: object, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        asked.append(args)
        return subprocess.CompletedProcess(args, 3, "mongo  EXITED  Dec 07 04:59 PM\n", "")

    monkeypatch.setattr(stack_engine, "supervisord_running", lambda _: True)
    monkeypatch.setattr(stack_engine, "ctl", ctl)
    with pytest.raises(StackError) as raised:
        stack_engine.wait_until("mongo", lambda: False, 0.3, stack, "mongo")
    message = str(raised.value)
    assert asked == [("status", "mongo")]
    assert "\n  supervisord: mongo  EXITED  Dec 07 04:59 PM\n" in message
    assert message.endswith("\n    ".join(f"line {n}" for n in range(25, 40)))
    assert "line 24" not in message


# --------------------------------------------------------------------------- the gateway


def rendered_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **environ: str) -> str:
    monkeypatch.setattr(provision, "ensure_nginx", lambda: None)
    stack = make_stack(tmp_path, **environ)
    stack_parts.configure_nginx(stack)
    return (stack_parts.nginx_dir(stack) / "nginx.conf").read_text()


def test_the_gateway_limits_commands_per_client_generously_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = rendered_nginx(tmp_path, monkeypatch)
    assert "limit_req_zone $catalog_command_client zone=catalog_commands:10m rate=200r/s;" in conf
    assert "limit_req zone=catalog_commands burst=400 nodelay;" in conf
    assert "{" + "command_rate}" not in conf
    assert "{" + "command_burst}" not in conf


def test_the_gateway_limit_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = rendered_nginx(
        tmp_path,
        monkeypatch,
        STACK_GATEWAY_COMMAND_RATE="5000",
        STACK_GATEWAY_COMMAND_BURST="12000",
    )
    assert "rate=5000r/s;" in conf
    assert "burst=12000 nodelay;" in conf


@pytest.mark.parametrize("value", ["0", "-1", "10r/s", "1.5"])
def test_a_gateway_limit_that_is_not_a_positive_number_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(StackError, match="STACK_GATEWAY_COMMAND_BURST must be a positive"):
        rendered_nginx(tmp_path, monkeypatch, STACK_GATEWAY_COMMAND_BURST=value)


def test_the_gateway_routes_key_the_limit_on_commands_only() -> None:
    routes = (Path(LOCAL) / "nginx" / "gateway.conf").read_text()
    key = re.search(r"map \$request_method \$catalog_command_client \{([^}]*)\}", routes)
    assert key is not None
    assert re.findall(r"(\w+)\s+(\S+);", key.group(1)) == [
        ("GET", '""'),
        ("HEAD", '""'),
        ("default", "$binary_remote_addr"),
    ]
    assert "limit_req_status 429;" in routes
    assert "client_max_body_size 64k;" in routes
    compose = (Path(LOCAL).parent / "compose" / "nginx.conf").read_text()
    assert "zone=catalog_commands:10m" in compose
    assert "limit_req zone=catalog_commands" in compose
