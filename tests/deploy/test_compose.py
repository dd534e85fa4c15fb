"""deploy/compose/compose.yaml: valid, complete, health-gated, the local stack's gateway routes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.dockerfiles import parse
from tests.deploy.manifests import REPO, image_tag
from tests.deploy.service_settings import accepted_variables
from tests.deploy.toolchain import Toolchain

COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
LOCAL_GATEWAY_ROUTES = REPO / "deploy" / "local" / "nginx" / "gateway.conf"

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    found: dict[str, Service] = compose["services"]
    return found


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _long_running(service: Service) -> bool:
    return bool(service.get("restart", "no") != "no")


def _image_healthcheck(service: Service) -> bool:
    build = service.get("build")
    if not build:
        return False
    dockerfile = parse((COMPOSE_DIR / str(build["context"]) / str(build["dockerfile"])).resolve())
    return bool(dockerfile.final.all("HEALTHCHECK"))


def _has_healthcheck(service: Service) -> bool:
    healthcheck = service.get("healthcheck")
    if healthcheck is not None:
        return not healthcheck.get("disable", False)
    return _image_healthcheck(service)


def _mounts(service: Service) -> list[tuple[str, str]]:
    """(source, target) of every short-syntax volume."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts.append((source, target))
    return mounts


def test_the_compose_file_is_valid(toolchain: Toolchain, compose: dict[str, Any]) -> None:
    """The compose specification's schema always; `docker compose config` too where installed."""
    schema = json.loads(toolchain.compose_schema.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert not errors, errors
    if _compose_plugin():
        done = subprocess.run(
            ["docker", "compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def test_the_whole_system_is_there(services: dict[str, Service]) -> None:
    assert set(services) >= {
        "postgres",
        "kafka",
        "mongo",
        "command",
        "relay",
        "projector",
        "query",
        "gateway",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "KRaft"
    assert not any("zookeeper" in name for name in services)
    assert services["gateway"]["image"].startswith("nginx:")
    commands = {name: services[name]["command"] for name in ("command", "relay", "projector")}
    assert commands == {"command": ["serve"], "relay": ["relay"], "projector": ["run"]}


def test_the_services_are_built_from_the_repository_dockerfiles(
    services: dict[str, Service],
) -> None:
    expected = {
        "command": "command-service",
        "relay": "command-service",
        "migrate": "command-service",
        "topics": "command-service",
        "projector": "projector",
        "query": "query-service",
    }
    for name, image in expected.items():
        build = services[name]["build"]
        assert (COMPOSE_DIR / build["context"]).resolve() == REPO, "built from the workspace root"
        assert build["dockerfile"] == f"deploy/docker/{image}.Dockerfile"
        assert (REPO / build["dockerfile"]).is_file()
        assert services[name]["image"].startswith(f"catalog-cqrs/{image}:")


def test_every_image_is_pinned(services: dict[str, Service]) -> None:
    for name, service in services.items():
        assert image_tag(service["image"]) not in (None, "latest"), name


def test_the_start_order_is_health_gated(services: dict[str, Service]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert _has_healthcheck(services[dependency]), f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, dependency)
                assert not _long_running(services[dependency]), (name, dependency)
    # No cycles: a topological order exists.
    remaining = {name: set(s.get("depends_on", {})) for name, s in services.items()}
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps & set(remaining)]
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        for name in ready:
            del remaining[name]


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Service]) -> None:
    for name, service in services.items():
        if _long_running(service):
            assert _has_healthcheck(service), name


def test_one_shot_services_are_awaited_by_a_long_running_one(services: dict[str, Service]) -> None:
    """So their exit 0 is expected, and `docker compose up --wait` does not count it a failure."""
    for name, service in services.items():
        if not _long_running(service):
            assert any(
                _long_running(other)
                and other.get("depends_on", {}).get(name, {}).get("condition")
                == "service_completed_successfully"
                for other in services.values()
            ), name


def test_the_data_lives_in_named_volumes(
    compose: dict[str, Any], services: dict[str, Service]
) -> None:
    declared = set(compose.get("volumes", {}))
    used = set()
    for name in ("postgres", "kafka", "mongo"):
        named = [s for s, _ in _mounts(services[name]) if not s.startswith((".", "/"))]
        assert named, f"{name} keeps its data in a named volume"
        used.update(named)
    for service in services.values():
        for source, _ in _mounts(service):
            if not source.startswith((".", "/")):
                assert source in declared, source
            else:
                assert (COMPOSE_DIR / source).exists(), source
    # Besides the data: the development signing key, kept across restarts like the data.
    assert used | {"dev-keys"} == declared


def test_mongodb_is_a_replica_set_the_read_side_names(services: dict[str, Service]) -> None:
    """The projector folds category figures in transactions, which MongoDB runs only on a
    replica set: the server starts as one, its health check initiates it, and every MongoDB
    URL names it."""
    mongo = services["mongo"]
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    urls = [
        value
        for service in services.values()
        for key, value in (service.get("environment") or {}).items()
        if key.endswith("MONGODB_URL")
    ]
    assert urls
    assert all(f"replicaSet={replica_set}" in url for url in urls), urls


def test_the_command_service_trusts_the_development_key_set(
    services: dict[str, Service],
) -> None:
    command, keys = services["command"], services["dev-keys"]
    assert command["environment"]["COMMAND_JWKS_FILE"] == "/keys/jwks.json"
    assert ("dev-keys", "/keys") in _mounts(command)
    assert any(v.endswith(":ro") for v in command["volumes"]), "the command service only reads it"
    assert keys["command"] == ["dev-keys", "/keys"]
    assert command["depends_on"]["dev-keys"]["condition"] == "service_completed_successfully"


def test_the_gateway_uses_the_local_stack_routes(services: dict[str, Service]) -> None:
    """The same gateway.conf as `make up`, mounted rather than copied, with its two upstreams."""
    mounts = {
        (COMPOSE_DIR / source).resolve(): PurePosixPath(target)
        for source, target in _mounts(services["gateway"])
    }
    assert LOCAL_GATEWAY_ROUTES in mounts
    main_conf = mounts[(COMPOSE_DIR / "nginx.conf").resolve()]
    assert main_conf == PurePosixPath("/etc/nginx/nginx.conf")
    # gateway.conf includes gateway-listen.conf relative to the main configuration's directory.
    assert "include gateway-listen.conf;" in LOCAL_GATEWAY_ROUTES.read_text()
    listen = mounts[(COMPOSE_DIR / "gateway-listen.conf").resolve()]
    assert listen == main_conf.parent / "gateway-listen.conf"
    nginx_conf = (COMPOSE_DIR / "nginx.conf").read_text()
    assert f"include {mounts[LOCAL_GATEWAY_ROUTES]};" in nginx_conf
    upstreams = dict(re.findall(r"upstream (\w+) \{[^}]*?server ([\w.-]+:\d+)", nginx_conf))
    assert upstreams == {"command_service": "command:18001", "query_service": "query:18002"}
    for upstream in upstreams.values():
        host, _ = upstream.split(":")
        assert host in services
    assert not list(Path(COMPOSE_DIR).glob("gateway.conf")), "a copy of the routes"
    port = re.search(r"listen (\d+)", (COMPOSE_DIR / "gateway-listen.conf").read_text())
    assert port
    (published,) = services["gateway"]["ports"]
    assert published.endswith(f":{port[1]}")
    assert published.startswith("127.0.0.1:"), "reachable from this machine only"


def test_only_the_gateway_is_published(services: dict[str, Service]) -> None:
    assert [name for name, service in services.items() if service.get("ports")] == ["gateway"]


def test_the_services_containers_are_locked_down(services: dict[str, Service]) -> None:
    for name, service in services.items():
        if "build" in service:
            assert service.get("read_only") is True, name
            assert service.get("cap_drop") == ["ALL"], name
            assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_every_variable_is_one_the_services_read(services: dict[str, Service]) -> None:
    """A misspelt variable would be ignored silently and the default used instead."""
    for name, service in services.items():
        image = str(service["image"]).split(":", 1)[0]
        if image.startswith("catalog-cqrs/"):
            read = accepted_variables(image.removeprefix("catalog-cqrs/"))
            unknown = set(service.get("environment", {})) - read
            assert not unknown, (name, unknown)
