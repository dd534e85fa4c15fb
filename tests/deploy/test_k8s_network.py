"""The NetworkPolicies let through the flows of the architecture picture, and nothing else."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import Rendered
from tests.deploy.netpol import Pod, allows

# Where the cluster-wide parts run (README "Running on Kubernetes"): Envoy Gateway's data plane,
# the KEDA operator (it reads the projector's consumer lag from Kafka), the Prometheus operator's
# Prometheus (base/monitoring.yaml) beside other pods of its namespace, and anything else.
GATEWAY = Pod("gateway", "envoy-gateway-system", {"app.kubernetes.io/name": "envoy"})
KEDA = Pod("keda", "keda", {"app": "keda-operator"})
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = Pod("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"})
COLLECTOR = Pod(
    "otel-collector", "monitoring", {"app.kubernetes.io/name": "opentelemetry-collector"}
)
STRANGER = Pod("stranger", "default", {"app": "something-else"})
KUBE_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"})


def _pods(rendered: Rendered) -> dict[str, Pod]:
    """The overlay's own pods, and the operators' pods with the labels the operators give them."""
    namespace = rendered.namespace
    pods = {
        str(template["metadata"]["labels"]["app.kubernetes.io/name"]): Pod(
            str(workload["metadata"]["name"]), namespace, template["metadata"]["labels"]
        )
        for workload, template in rendered.workloads()
    }
    (postgres,) = rendered.of_kind("Cluster")
    pods["postgres"] = Pod(
        "postgres",
        namespace,
        {"cnpg.io/cluster": postgres["metadata"]["name"], "cnpg.io/instanceRole": "primary"},
    )
    (kafka,) = rendered.of_kind("Kafka")
    (pool,) = rendered.of_kind("KafkaNodePool")
    cluster = kafka["metadata"]["name"]
    pods["kafka"] = Pod(
        "kafka",
        namespace,
        {
            "strimzi.io/cluster": cluster,
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": f"{cluster}-kafka",
            "strimzi.io/pool-name": pool["metadata"]["name"],
            "strimzi.io/broker-role": "true",
            "strimzi.io/controller-role": "true",
        },
    )
    (mongodb,) = rendered.of_kind("MongoDBCommunity")
    pods["mongodb"] = Pod("mongodb", namespace, {"app": f"{mongodb['metadata']['name']}-svc"})
    pods.update(
        gateway=GATEWAY,
        keda=KEDA,
        prometheus=PROMETHEUS,
        grafana=GRAFANA,
        collector=COLLECTOR,
        stranger=STRANGER,
    )
    return pods


ALLOWED = [
    ("gateway", "command-service", 18001),
    ("gateway", "query-service", 18002),
    ("command-service", "postgres", 5432),
    ("relay", "postgres", 5432),
    ("catalog-migrate", "postgres", 5432),
    ("relay", "kafka", 9092),
    ("projector", "kafka", 9092),
    ("keda", "kafka", 9092),
    ("projector", "mongodb", 27017),
    ("query-service", "mongodb", 27017),
    ("prometheus", "command-service", 18001),  # the metrics ports
    ("prometheus", "query-service", 18002),
    ("prometheus", "relay", 18011),
    ("prometheus", "projector", 18012),
    ("command-service", "collector", 4318),  # spans, OTLP over HTTP
    ("relay", "collector", 4318),
    ("projector", "collector", 4318),
    ("query-service", "collector", 4318),
    ("postgres", "postgres", 5432),  # streaming replication
    ("kafka", "kafka", 9091),  # replication and the KRaft quorum
    ("mongodb", "mongodb", 27017),  # replica set members
]

DENIED = [
    ("query-service", "postgres", 5432),
    ("query-service", "kafka", 9092),
    ("projector", "postgres", 5432),
    ("command-service", "kafka", 9092),
    ("command-service", "mongodb", 27017),
    ("relay", "mongodb", 27017),
    ("catalog-migrate", "kafka", 9092),
    ("command-service", "query-service", 18002),
    ("query-service", "command-service", 18001),
    ("gateway", "relay", 18011),
    ("gateway", "projector", 18012),
    ("gateway", "postgres", 5432),
    ("gateway", "mongodb", 27017),
    ("stranger", "command-service", 18001),
    ("stranger", "query-service", 18002),
    ("stranger", "postgres", 5432),
    ("stranger", "kafka", 9092),
    ("stranger", "mongodb", 27017),
    ("keda", "postgres", 5432),
    ("stranger", "relay", 18011),
    ("stranger", "projector", 18012),
    ("grafana", "relay", 18011),
    ("grafana", "command-service", 18001),
    ("prometheus", "postgres", 5432),
    ("prometheus", "kafka", 9092),
    ("prometheus", "mongodb", 27017),
    ("catalog-migrate", "collector", 4318),
    ("command-service", "collector", 4317),
    ("command-service", "grafana", 4318),
]


def test_a_default_deny_policy_isolates_every_pod(rendered: Rendered) -> None:
    default_deny = [
        policy
        for policy in rendered.of_kind("NetworkPolicy")
        if policy["spec"]["podSelector"] == {}
        and set(policy["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert default_deny, f"{rendered.overlay}: no default-deny NetworkPolicy"


@pytest.mark.parametrize(("source", "target", "port"), ALLOWED, ids=lambda v: str(v))
def test_the_pictures_flows_are_allowed(
    rendered: Rendered, source: str, target: str, port: int
) -> None:
    pods = _pods(rendered)
    policies = rendered.of_kind("NetworkPolicy")
    assert allows(policies, pods[source], pods[target], port), f"{source} -> {target}:{port}"


@pytest.mark.parametrize(("source", "target", "port"), DENIED, ids=lambda v: str(v))
def test_other_flows_are_denied(rendered: Rendered, source: str, target: str, port: int) -> None:
    pods = _pods(rendered)
    policies = rendered.of_kind("NetworkPolicy")
    assert not allows(policies, pods[source], pods[target], port), f"{source} -> {target}:{port}"


def test_every_pod_resolves_names(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    for name, pod in _pods(rendered).items():
        if pod.namespace == rendered.namespace:
            assert allows(policies, pod, KUBE_DNS, 53, "UDP"), name
            assert allows(policies, pod, KUBE_DNS, 53, "TCP"), name


# What a service may reach outside the cluster: the command service, its identity provider's
# key set over HTTPS.
OUTSIDE = {("command-service", 443)}


def test_the_services_reach_nothing_outside(rendered: Rendered) -> None:
    """Only the operators' data pods may call out (the Kubernetes API), and the command service
    its identity provider over HTTPS; nothing else may."""
    policies = rendered.of_kind("NetworkPolicy")
    internet = Pod("internet", "elsewhere", {})
    for workload, template in rendered.workloads():
        name = workload["metadata"]["name"]
        pod = Pod(name, rendered.namespace, template["metadata"]["labels"])
        for port in (80, 443, 6443):
            expected = (name, port) in OUTSIDE
            assert allows(policies, pod, internet, port) == expected, (name, port)


def test_the_identity_provider_rule_reaches_no_private_address(rendered: Rendered) -> None:
    blocks = [
        peer["ipBlock"]
        for policy in rendered.of_kind("NetworkPolicy")
        for rule in policy["spec"].get("egress") or []
        for peer in rule.get("to") or []
        if "ipBlock" in peer
        and policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        == "command-service"
    ]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}
    ]


def test_kafka_listener_peers_match_the_policies(rendered: Rendered) -> None:
    """Strimzi writes its own listener policy from networkPolicyPeers; it must not widen ours."""
    (kafka,) = rendered.of_kind("Kafka")
    pods = _pods(rendered)
    for listener in kafka["spec"]["kafka"]["listeners"]:
        peers = listener.get("networkPolicyPeers")
        assert peers, "without peers Strimzi lets every pod in the cluster reach the listener"
        strimzi_policy = {
            "metadata": {"namespace": rendered.namespace},
            "spec": {
                "podSelector": {"matchLabels": {"strimzi.io/cluster": kafka["metadata"]["name"]}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": peers, "ports": [{"port": listener["port"]}]}],
            },
        }
        for name, pod in pods.items():
            expected = name in ("relay", "projector", "keda")
            assert allows([strimzi_policy], pod, pods["kafka"], listener["port"]) == expected, name
