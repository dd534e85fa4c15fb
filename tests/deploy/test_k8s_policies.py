"""Policies every overlay must keep, asserted on the rendered objects (no cluster needed)."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from catalog_contracts.events import EVENTS_TOPIC, REVIEWS_TOPIC
from tests.deploy.manifests import (
    REPO,
    Obj,
    Rendered,
    containers,
    image_tag,
    images,
    label_selector_matches,
)
from tests.deploy.service_settings import accepted_variables, default

HTTP_SERVICES = ("command-service", "query-service")
# What the operators name the Secrets the services read (the overlays' own Secrets are rendered).
OPERATOR_SECRETS = {
    # One per PostgreSQL role (username, password, uri): CloudNativePG sets the passwords.
    "catalog-postgres-migrator",
    "catalog-postgres-command",
    "catalog-postgres-relay",
    "catalog-mongodb-projector",  # MongoDB Community: connectionStringSecretName of each user
    "catalog-mongodb-query",
}


def _deployments(rendered: Rendered) -> list[Obj]:
    return rendered.of_kind("Deployment")


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def _probe_path(probe: dict[str, Any] | None) -> str | None:
    return None if probe is None else probe.get("httpGet", {}).get("path")


# --- containers -----------------------------------------------------------------------------


def test_every_deployment_container_has_three_probes(rendered: Rendered) -> None:
    for deployment in _deployments(rendered):
        for container in containers(deployment["spec"]["template"]):
            where = f"{rendered.overlay} {_name(deployment)}/{container['name']}"
            paths = {
                kind: _probe_path(container.get(kind))
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            }
            assert all(paths.values()), f"{where}: every probe must be an httpGet, got {paths}"
            port_names = {port["name"] for port in container.get("ports", [])}
            if "http" in port_names:  # the HTTP services: alive on /healthz, ready on /readyz
                assert paths == {
                    "startupProbe": "/healthz",
                    "livenessProbe": "/healthz",
                    "readinessProbe": "/readyz",
                }, where
            else:  # the relay and the projector serve /metrics only
                assert set(paths.values()) == {"/metrics"}, where
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[kind]["httpGet"]["port"] in port_names, where


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    for workload, template in rendered.workloads():
        for container in containers(template):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{rendered.overlay} {_name(workload)}/{container['name']}: {bound} "
                    f"need cpu and memory, got {resources}"
                )


def test_every_container_is_locked_down(rendered: Rendered) -> None:
    for workload, template in rendered.workloads():
        pod_security = template["spec"].get("securityContext", {})
        assert template["spec"].get("automountServiceAccountToken") is False, _name(workload)
        for container in containers(template):
            where = f"{rendered.overlay} {_name(workload)}/{container['name']}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 1)) != 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False, where
            assert "ALL" in security.get("capabilities", {}).get("drop", []), where
            assert not security.get("capabilities", {}).get("add"), where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


def test_no_image_is_latest_or_untagged(rendered: Rendered) -> None:
    found = [image for obj in rendered.objects for image in images(obj)]
    assert found, "the overlay names no image at all"
    for image in found:
        assert image_tag(image) not in (None, "latest") or "@sha256:" in image, image


def test_service_images_are_built_from_this_repository(rendered: Rendered) -> None:
    for workload, template in rendered.workloads():
        for container in containers(template):
            name = container["image"].split(":", 1)[0]
            assert name.startswith("catalog-cqrs/"), container["image"]
            dockerfile = REPO / "deploy" / "docker" / f"{name.split('/', 1)[1]}.Dockerfile"
            assert dockerfile.is_file(), f"{_name(workload)}: no {dockerfile}"


def test_secrets_come_from_secret_references(rendered: Rendered) -> None:
    rendered_secrets = {_name(secret) for secret in rendered.of_kind("Secret")}
    for workload, template in rendered.workloads():
        for container in containers(template):
            for variable in container.get("env", []):
                value = str(variable.get("value", ""))
                assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), (
                    f"{_name(workload)}: {variable['name']} holds a credential"
                )
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] in OPERATOR_SECRETS | rendered_secrets, ref
            for source in container.get("envFrom", []):
                assert "configMapRef" in source, "settings come from the ConfigMap"
                rendered.get("ConfigMap", source["configMapRef"]["name"])


def _image(container: Obj) -> str:
    return str(container["image"]).split(":", 1)[0].removeprefix("catalog-cqrs/")


def test_every_variable_is_one_the_services_read(rendered: Rendered) -> None:
    """A misspelt variable would be ignored silently and the default used instead."""
    (config,) = rendered.of_kind("ConfigMap")
    images = {_image(c) for _, t in rendered.workloads() for c in containers(t)}
    read_by_some = set().union(*(accepted_variables(image) for image in images))
    assert set(config["data"]) <= read_by_some, set(config["data"]) - read_by_some
    for workload, template in rendered.workloads():
        for container in containers(template):
            read = accepted_variables(_image(container))
            for variable in container.get("env", []):
                assert variable["name"] in read, (_name(workload), variable["name"])


def test_ports_and_consumer_group_are_the_services_defaults(rendered: Rendered) -> None:
    expected = {
        "command-service": {"http": default("command-service", "port")},
        "relay": {"metrics": default("command-service", "relay_metrics_port")},
        "projector": {"metrics": default("projector", "metrics_port")},
        "query-service": {"http": default("query-service", "port")},
    }
    for deployment in _deployments(rendered):
        (container,) = containers(deployment["spec"]["template"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == expected[_name(deployment)], _name(deployment)
    (scaled,) = rendered.of_kind("ScaledObject")
    group = scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    assert group == default("projector", "group_id")


def test_prod_keeps_secrets_out_of_git(rendered_overlays: dict[str, Rendered]) -> None:
    assert rendered_overlays["prod"].of_kind("Secret") == []


def test_the_kafka_bootstrap_address_is_fully_qualified(rendered: Rendered) -> None:
    """KEDA's operator, in its own namespace, resolves the projector's KAFKA_BOOTSTRAP_SERVERS."""
    (config,) = rendered.of_kind("ConfigMap")
    (kafka,) = rendered.of_kind("Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    expected = f"{_name(kafka)}-kafka-bootstrap.{rendered.namespace}.svc:{listener['port']}"
    assert config["data"]["KAFKA_BOOTSTRAP_SERVERS"] == expected
    assert config["data"]["EVENTS_TOPIC"] == EVENTS_TOPIC
    assert config["data"]["REVIEWS_TOPIC"] == REVIEWS_TOPIC
    assert config["data"]["COMMAND_ENVIRONMENT"] != "development"


def test_every_namespaced_object_lands_in_the_overlay_namespace(rendered: Rendered) -> None:
    namespace = rendered.namespace
    for obj in rendered.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, _name(obj)
    for binding in rendered.of_kind("RoleBinding"):
        for subject in binding["subjects"]:
            assert subject.get("namespace") == namespace, binding


# --- PostgreSQL roles: least privilege -----------------------------------------------------

# Who connects to PostgreSQL, as which role, through which Secret.
POSTGRES_ROLES = {
    "catalog-migrate": ("catalog_migrator", "catalog-postgres-migrator"),
    "command-service": ("catalog_command", "catalog-postgres-command"),
    "relay": ("catalog_relay", "catalog-postgres-relay"),
}


def _postgres_secret_refs(template: Obj) -> set[str]:
    return {
        ref["name"]
        for container in containers(template)
        for variable in container.get("env", [])
        if (ref := variable.get("valueFrom", {}).get("secretKeyRef"))
        and ref["name"].startswith("catalog-postgres")
    }


def test_each_postgres_client_uses_its_own_roles_secret(rendered: Rendered) -> None:
    seen = set()
    for workload, template in rendered.workloads():
        refs = _postgres_secret_refs(template)
        if _name(workload) in POSTGRES_ROLES:
            _, secret = POSTGRES_ROLES[_name(workload)]
            assert refs == {secret}, f"{rendered.overlay} {_name(workload)}: {refs}"
            seen.add(_name(workload))
        else:
            assert not refs, f"{rendered.overlay} {_name(workload)} reads PostgreSQL secrets"
    assert seen == set(POSTGRES_ROLES)


def test_the_cluster_manages_one_role_per_client(rendered: Rendered) -> None:
    (cluster,) = rendered.of_kind("Cluster")
    spec = cluster["spec"]
    roles = {role["name"]: role for role in spec["managed"]["roles"]}
    assert {name: role["passwordSecret"]["name"] for name, role in roles.items()} == dict(
        POSTGRES_ROLES.values()
    )
    for name, role in roles.items():
        assert role["login"] is True, name
        assert role.get("ensure", "present") == "present", name
        for power in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert not role.get(power, False), (name, power)
    # The migrator owns the database, so the tables it creates are its own.
    migrator, migrator_secret = POSTGRES_ROLES["catalog-migrate"]
    assert spec["bootstrap"]["initdb"]["owner"] == migrator
    assert spec["bootstrap"]["initdb"]["secret"]["name"] == migrator_secret


def test_dev_role_secrets_agree_with_their_uri(rendered_overlays: dict[str, Rendered]) -> None:
    """CloudNativePG sets the password from `password`, the pods connect with `uri`."""
    dev = rendered_overlays["dev"]
    (cluster,) = dev.of_kind("Cluster")
    for role, name in POSTGRES_ROLES.values():
        secret = dev.get("Secret", name)
        assert secret["type"] == "kubernetes.io/basic-auth", name
        data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        uri = urlsplit(data["uri"])
        assert data["username"] == uri.username == role, name
        assert data["password"] == uri.password, name
        assert uri.password != "catalog", "the services refuse it outside development"
        assert uri.hostname == f"{_name(cluster)}-rw", name
        assert uri.path == f"/{cluster['spec']['bootstrap']['initdb']['database']}", name


# --- services, budgets, autoscaling ---------------------------------------------------------


def test_every_service_selects_a_deployment(rendered: Rendered) -> None:
    for service in rendered.of_kind("Service"):
        selector = service["spec"].get("selector") or {}
        assert selector, f"{_name(service)} selects nothing"
        targets = [
            d
            for d in _deployments(rendered)
            if label_selector_matches({"matchLabels": selector}, _pod_labels(d))
        ]
        assert targets, f"{rendered.overlay}: Service {_name(service)} selects no Deployment"
        port_names = {
            port["name"]
            for deployment in targets
            for container in containers(deployment["spec"]["template"])
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{_name(service)}: {port}"


def test_every_deployment_has_a_disruption_budget(rendered: Rendered) -> None:
    budgets = rendered.of_kind("PodDisruptionBudget")
    for deployment in _deployments(rendered):
        assert any(
            label_selector_matches(budget["spec"]["selector"], _pod_labels(deployment))
            for budget in budgets
        ), f"{rendered.overlay}: no PodDisruptionBudget for {_name(deployment)}"


@pytest.mark.parametrize("service", HTTP_SERVICES)
def test_http_services_scale_on_cpu(rendered: Rendered, service: str) -> None:
    hpa = rendered.get("HorizontalPodAutoscaler", service)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service,
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == [
        "cpu"
    ]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    deployment = rendered.get("Deployment", service)
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    for container in containers(deployment["spec"]["template"]):
        assert "cpu" in container["resources"]["requests"], "CPU utilization needs a request"


def test_only_the_http_services_have_cpu_autoscalers(rendered: Rendered) -> None:
    targets = sorted(
        h["spec"]["scaleTargetRef"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")
    )
    assert targets == sorted(HTTP_SERVICES), "the projector is KEDA's; the relay is fixed"


def test_relay_runs_two_replicas_one_active(rendered: Rendered) -> None:
    relay = rendered.get("Deployment", "relay")
    expected = 1 if rendered.overlay == "dev" else 2
    assert relay["spec"]["replicas"] == expected
    budget = rendered.get("PodDisruptionBudget", "relay")
    assert budget["spec"].get("maxUnavailable") == 1


# --- Kafka: the topics and the projector's autoscaling --------------------------------------


def _topics(rendered: Rendered) -> dict[str, Obj]:
    return {t["spec"].get("topicName", _name(t)): t for t in rendered.of_kind("KafkaTopic")}


def test_the_events_topics_are_compacted_and_the_dead_letters_are_not(rendered: Rendered) -> None:
    topics = _topics(rendered)
    for name in (EVENTS_TOPIC, REVIEWS_TOPIC):
        events = topics[name]["spec"]
        assert events["config"]["cleanup.policy"] == "compact", name
        assert int(events["config"]["min.compaction.lag.ms"]) > 0, name
        dead_letters = topics[f"{name}.dlq"]["spec"]
        assert dead_letters["config"]["cleanup.policy"] == "delete", name
    (pool,) = rendered.of_kind("KafkaNodePool")
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == _name(
            rendered.of_kind("Kafka")[0]
        )
        assert topic["spec"]["replicas"] <= pool["spec"]["replicas"]
        assert int(topic["spec"]["config"]["min.insync.replicas"]) <= topic["spec"]["replicas"]


def test_prod_has_24_partitions(rendered_overlays: dict[str, Rendered]) -> None:
    assert _topics(rendered_overlays["prod"])[EVENTS_TOPIC]["spec"]["partitions"] == 24


def test_the_events_topics_are_co_partitioned(rendered: Rendered) -> None:
    """The projector relies on a product's events having one partition number in both topics."""
    topics = _topics(rendered)
    partitions = {
        name: topics[name]["spec"]["partitions"] for name in (EVENTS_TOPIC, REVIEWS_TOPIC)
    }
    assert len(set(partitions.values())) == 1, f"{rendered.overlay}: {partitions}"


def test_the_projector_never_scales_past_the_partitions(rendered: Rendered) -> None:
    topics = _topics(rendered)
    (scaled,) = rendered.of_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "projector"
    rendered.get("Deployment", "projector")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    partitions = topics[trigger["metadata"]["topic"]]["spec"]["partitions"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions, (
        f"{rendered.overlay}: up to {scaled['spec']['maxReplicaCount']} projectors for "
        f"{partitions} partitions"
    )
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    # The trigger reads the bootstrap servers from the projector's own environment.
    env_names = {
        key
        for container in containers(rendered.get("Deployment", "projector")["spec"]["template"])
        for source in container.get("envFrom", [])
        for key in rendered.get("ConfigMap", source["configMapRef"]["name"])["data"]
    }
    assert trigger["metadata"]["bootstrapServersFromEnv"] in env_names


# --- the gateway ----------------------------------------------------------------------------


def _target(rule: dict[str, Any]) -> str:
    """A rule's one backend Service, or `redirect PATH` for a redirecting rule."""
    for route_filter in rule.get("filters", []):
        if route_filter["type"] == "RequestRedirect":
            return f"redirect {route_filter['requestRedirect']['path']['replaceFullPath']}"
    (backend,) = rule["backendRefs"]
    return str(backend["name"])


def _rewritten(rendered: Rendered, path: str) -> str:
    """The path the backend sees for `path`, after the HTTPRoute's URL rewrites."""
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            exact = [m for m in rule.get("matches", []) if m.get("path", {}).get("type") == "Exact"]
            if any(m["path"]["value"] == path for m in exact):
                for route_filter in rule.get("filters", []):
                    if route_filter["type"] == "URLRewrite":
                        return str(route_filter["urlRewrite"]["path"]["replaceFullPath"])
    return path


def _route(rendered: Rendered, method: str, path: str) -> str | None:
    """The Service the HTTPRoute sends `method path` to, by Gateway API match precedence."""
    candidates: list[tuple[tuple[int, int, int], str]] = []
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for match in rule.get("matches", [{}]):
                match_path = match.get("path", {"type": "PathPrefix", "value": "/"})
                prefix = match_path["value"].rstrip("/")
                if match_path["type"] == "Exact":
                    hit = path == match_path["value"]
                else:
                    hit = path == prefix or path.startswith(prefix + "/")
                if not hit or match.get("method", method) != method:
                    continue
                exact = int(match_path["type"] == "Exact")
                candidates.append(((exact, len(prefix), int("method" in match)), _target(rule)))
    return max(candidates)[1] if candidates else None


@pytest.mark.parametrize(
    ("method", "service"),
    [
        ("GET", "query-service"),
        ("HEAD", "query-service"),
        ("POST", "command-service"),
        ("PUT", "command-service"),
        ("PATCH", "command-service"),
        ("DELETE", "command-service"),
    ],
)
def test_the_gateway_splits_reads_from_writes(
    rendered: Rendered, method: str, service: str
) -> None:
    for path in ("/api/v1/products", "/api/v1/products/0190/price", "/api/v1/categories"):
        assert _route(rendered, method, path) == service, (method, path)
    assert _route(rendered, method, "/internal") is None


def test_routes_attach_to_the_gateway_and_reach_real_service_ports(rendered: Rendered) -> None:
    (gateway,) = rendered.of_kind("Gateway")
    listeners = {listener["name"] for listener in gateway["spec"]["listeners"]}
    for route in rendered.of_kind("HTTPRoute"):
        for parent in route["spec"]["parentRefs"]:
            assert parent["name"] == _name(gateway)
            assert parent.get("sectionName", next(iter(listeners))) in listeners
        for rule in route["spec"]["rules"]:
            assert "retry" not in rule, "a retried command could apply twice"
            for backend in rule.get("backendRefs", []):
                service = rendered.get("Service", backend["name"])
                assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_docs_reach_the_service_they_describe(rendered: Rendered, method: str) -> None:
    for service in ("command", "query"):
        page, document = f"/api/v1/docs/{service}", f"/api/v1/docs/{service}/openapi.json"
        assert _route(rendered, method, page) == f"{service}-service"
        assert _route(rendered, method, document) == f"{service}-service"
        # Each service serves its document where direct callers look for it.
        assert _rewritten(rendered, document) == "/openapi.json"
        assert _rewritten(rendered, page) == page
    assert _route(rendered, method, "/api/v1/docs") == "redirect /api/v1/docs/query"


def test_every_route_answer_carries_the_security_headers(rendered: Rendered) -> None:
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            if any(f["type"] == "RequestRedirect" for f in rule.get("filters", [])):
                continue
            (headers,) = [
                f["responseHeaderModifier"]["set"]
                for f in rule.get("filters", [])
                if f["type"] == "ResponseHeaderModifier"
            ]
            values = {header["name"]: header["value"] for header in headers}
            assert values["X-Content-Type-Options"] == "nosniff", rule["name"]
            assert values["X-Frame-Options"] == "DENY", rule["name"]
            assert values["Referrer-Policy"] == "no-referrer", rule["name"]
            policy = values["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in policy, rule["name"]
            assert ("cdn.jsdelivr.net" in policy) == rule["name"].endswith("-docs"), rule["name"]
