"""Which connections a set of NetworkPolicies lets through, by the Kubernetes semantics.

A pod is isolated in a direction once some policy of its namespace selects it for that direction;
then a connection passes only if a rule of such a policy admits the peer and the port. A
connection needs both the source's egress and the target's ingress to admit it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.manifests import Obj, label_selector_matches


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: its namespace and labels."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def allows(
    policies: Sequence[Obj], source: Pod, target: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may open a connection to `target` on `port`."""
    return _admits(policies, "Egress", source, target, port, protocol) and _admits(
        policies, "Ingress", target, source, port, protocol
    )


def _policy_types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _admits(
    policies: Sequence[Obj], direction: str, subject: Pod, peer: Pod, port: int, protocol: str
) -> bool:
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    isolating = [
        policy
        for policy in policies
        if policy["metadata"].get("namespace") == subject.namespace
        and direction in _policy_types(policy)
        and label_selector_matches(policy["spec"]["podSelector"], subject.labels)
    ]
    if not isolating:
        return True
    return any(
        _peer_admitted(rule.get(peers_key), policy["metadata"]["namespace"], peer)
        and _port_admitted(rule.get("ports"), port, protocol)
        for policy in isolating
        for rule in policy["spec"].get(rules_key) or []
    )


def _peer_admitted(peers: list[dict[str, Any]] | None, namespace: str, peer: Pod) -> bool:
    if not peers:
        return True
    for candidate in peers:
        if "ipBlock" in candidate:
            return True  # counted as admitting anyone: the strict reading for "must be denied"
        namespace_selector = candidate.get("namespaceSelector")
        pod_selector = candidate.get("podSelector")
        in_namespace = (
            label_selector_matches(namespace_selector, peer.namespace_labels)
            if namespace_selector is not None
            else peer.namespace == namespace
        )
        selected = pod_selector is None or label_selector_matches(pod_selector, peer.labels)
        if in_namespace and selected:
            return True
    return False


def _port_admitted(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for candidate in ports:
        if candidate.get("protocol", "TCP") != protocol:
            continue
        if "port" not in candidate:
            return True
        first, last = candidate["port"], candidate.get("endPort", candidate["port"])
        if isinstance(first, int) and first <= port <= last:
            return True
    return False
