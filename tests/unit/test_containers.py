"""TEST_INFRA=testcontainers' containers, checked as built: no Docker engine is contacted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the environment
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from tests.fixtures.containers import (
    KAFKA_BROKER_PORT,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    KAFKA_START_READY,
    KAFKA_START_SCRIPT,
    ServerUrls,
    kafka_container,
    kafka_start_script,
    mongo_container,
    postgres_container,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
STACK_PARTS = REPO / "deploy" / "local" / "stack_parts.py"
# Any version docker-py accepts: with no engine, no request ever carries it.
PINNED_API_VERSION = "1.45"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """docker_client_kw that builds containers with no engine; any contact would fail."""
    # A socket that does not exist: docker-py would raise if it tried to reach the engine.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.setattr(testcontainers_config, "hub_image_name_prefix", "")
    # A pinned API version is what spares docker-py its version query at construction.
    return {"version": PINNED_API_VERSION}


@pytest.fixture(scope="module")
def compose_services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    services: dict[str, Any] = loaded["services"]
    return services


def _listeners(value: str) -> dict[str, int]:
    """`NAME://host:port,...` as {NAME: port}."""
    found = {}
    for listener in value.split(","):
        name, address = listener.split("://")
        found[name] = int(address.rsplit(":", 1)[1])
    return found


@pytest.mark.parametrize(
    ("service", "build", "repository"),
    [
        ("postgres", postgres_container, "postgres"),
        ("kafka", kafka_container, "apache/kafka"),
        ("mongo", mongo_container, "mongo"),
    ],
)
def test_each_image_is_pinned_to_the_tag_compose_runs(
    offline: dict[str, Any],
    compose_services: dict[str, Any],
    service: str,
    build: Callable[..., DockerContainer],
    repository: str,
) -> None:
    image = build(docker_client_kw=offline).image
    assert image.rpartition(":")[0] == repository
    assert image.rpartition(":")[2] not in {"", "latest"}
    assert image == compose_services[service]["image"]


def test_postgres_has_the_catalog_role_and_database(offline: dict[str, Any]) -> None:
    container = postgres_container(docker_client_kw=offline)
    # start() calls _configure() just before `docker create`; it only fills in the environment.
    container._configure()
    assert container.ports == {"5432": None}
    assert container.env == {
        "POSTGRES_USER": "catalog",
        "POSTGRES_PASSWORD": "catalog",
        "POSTGRES_DB": "catalog",
    }
    assert container._command == ["postgres", "-c", "max_connections=300"]
    assert container.driver == ""  # plain postgresql:// URLs, as asyncpg and the services take


def test_kafka_is_a_single_kraft_node(offline: dict[str, Any]) -> None:
    container = kafka_container(docker_client_kw=offline)
    env = container.env
    assert container.ports == {str(KAFKA_PORT): None}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["CLUSTER_ID"]
    listeners = _listeners(env["KAFKA_LISTENERS"])
    assert listeners == {
        "PLAINTEXT": KAFKA_PORT,
        "BROKER": KAFKA_BROKER_PORT,
        "CONTROLLER": KAFKA_CONTROLLER_PORT,
    }
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(pair.split(":") for pair in protocol_map.split(","))
    assert protocols == dict.fromkeys(listeners, "PLAINTEXT")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "BROKER"
    # The only voter is this node, on its own controller listener.
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@localhost:{KAFKA_CONTROLLER_PORT}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # Known only after start: the start script exports it.
    assert "KAFKA_ADVERTISED_LISTENERS" not in env
    assert not {"KAFKA_BROKER_ID", "KAFKA_ZOOKEEPER_CONNECT"} & env.keys()


def test_kafka_keeps_compose_settings_that_do_not_depend_on_the_network(
    offline: dict[str, Any], compose_services: dict[str, Any]
) -> None:
    env = kafka_container(docker_client_kw=offline).env
    networked = {
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
    }
    compose_env = compose_services["kafka"]["environment"]
    for key, value in compose_env.items():
        if key not in networked:
            assert env.get(key) == str(value), key


def test_kafka_waits_for_its_start_script_then_for_the_started_broker(
    offline: dict[str, Any],
) -> None:
    container = kafka_container(docker_client_kw=offline)
    command = container._command
    assert isinstance(command, list)
    assert command[:2] == ["sh", "-c"]
    assert f"while [ ! -f {KAFKA_START_READY} ]" in command[2]
    assert command[2].endswith(f"exec sh {KAFKA_START_SCRIPT}")
    # A wait strategy run by DockerContainer.start() would time out before the script exists.
    assert container._wait_strategy is None
    assert isinstance(container.started, LogMessageWaitStrategy)
    line = "[2025-06-01 10:00:00,000] INFO [KafkaRaftServer nodeId=1] Kafka Server started"
    assert container.started._message.search(line)


def test_the_start_script_advertises_the_mapped_port_and_runs_the_image(
    offline: dict[str, Any],
) -> None:
    script = kafka_start_script("localhost:49153").decode()
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[-1] == "exec /etc/kafka/docker/run"
    exports = [line for line in lines if line.startswith("export KAFKA_ADVERTISED_LISTENERS=")]
    assert len(exports) == 1
    advertised = exports[0].split("=", 1)[1].strip('"')
    assert advertised == f"PLAINTEXT://localhost:49153,BROKER://$(hostname):{KAFKA_BROKER_PORT}"
    # Every advertised listener is one the broker listens on; a controller is never advertised.
    env = kafka_container(docker_client_kw=offline).env
    assert set(_listeners(advertised.replace("$(hostname)", "h"))) == set(
        _listeners(env["KAFKA_LISTENERS"])
    ) - {"CONTROLLER"}


def test_mongo_runs_without_a_root_user_and_waits_for_connections(
    offline: dict[str, Any],
) -> None:
    container = mongo_container(docker_client_kw=offline)
    assert container.ports == {"27017": None}
    assert container.env == {}
    strategy = container._wait_strategy
    assert isinstance(strategy, LogMessageWaitStrategy)
    line = (
        '{"t":{"$date":"2025-06-01T10:00:00.000+00:00"},"s":"I","c":"NETWORK","id":23016,'
        '"ctx":"listener","msg":"Waiting for connections","attr":{"port":27017,"ssl":"off"}}'
    )
    assert strategy._message.search(line)


def test_the_urls_reach_stackctl_under_the_names_it_reads() -> None:
    urls = ServerUrls(
        database_url="postgresql://catalog:catalog@localhost:49001/catalog",
        kafka_bootstrap_servers="localhost:49002",
        mongodb_url="mongodb://localhost:49003/",
    )
    env = urls.stack_env()
    assert env == {
        "STACK_DATABASE_URL": urls.database_url,
        "STACK_KAFKA_BOOTSTRAP_SERVERS": urls.kafka_bootstrap_servers,
        "STACK_MONGODB_URL": urls.mongodb_url,
    }
    # The table of parts names the variables that point a part at an external server.
    parts_source = STACK_PARTS.read_text()
    for name in env:
        assert f'"{name}"' in parts_source, name


def test_importing_the_builders_raises_no_warning() -> None:
    # A fresh interpreter: modules imported by this session would not warn a second time.
    probe = (
        "import sys\n"
        "import tests.fixtures.containers\n"
        "shims = {'testcontainers.postgres', 'testcontainers.kafka',"
        " 'testcontainers.mongodb', 'testcontainers.generic'}\n"
        "assert not shims & sys.modules.keys(), shims & sys.modules.keys()\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", probe],
        cwd=REPO,  # `-c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
