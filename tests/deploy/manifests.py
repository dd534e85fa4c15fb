"""The Kubernetes overlays rendered with kustomize, and questions about the objects in them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(
    path.name for path in (K8S / "overlays").iterdir() if (path / "kustomization.yaml").is_file()
)

Obj = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


@dataclass(frozen=True)
class Rendered:
    """Every object one overlay renders to."""

    overlay: str
    objects: tuple[Obj, ...]

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        names = [obj["metadata"]["name"] for obj in self.of_kind(kind)]
        raise KeyError(f"overlay {self.overlay} renders no {kind} {name!r} (has {names})")

    @property
    def namespace(self) -> str:
        """The namespace the overlay creates (exactly one)."""
        namespaces = self.of_kind("Namespace")
        assert len(namespaces) == 1, f"{self.overlay}: expected one Namespace, got {namespaces}"
        return str(namespaces[0]["metadata"]["name"])

    def workloads(self) -> Iterator[tuple[Obj, Obj]]:
        """(workload, its pod template) for every Deployment, Job, … the overlay renders."""
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS:
                spec = obj["spec"]
                if obj["kind"] == "CronJob":
                    spec = spec["jobTemplate"]["spec"]
                yield obj, spec["template"]


def render(kustomize: Path, overlay: str) -> Rendered:
    """`kustomize build deploy/k8s/overlays/OVERLAY`, parsed."""
    done = subprocess.run(
        [str(kustomize), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build of overlay {overlay} failed:\n{done.stderr}")
    objects = tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)
    return Rendered(overlay, objects)


def containers(pod_template: Mapping[str, Any]) -> list[Obj]:
    """Init containers and containers of a pod template."""
    spec = pod_template["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a metav1.LabelSelector selects `labels` (an empty selector selects everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def images(obj: Any) -> Iterator[str]:
    """Every image an object names, at any depth (`image`, or CloudNativePG's `imageName`)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key in ("image", "imageName") and isinstance(value, str):
                yield value
            else:
                yield from images(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from images(item)


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when it has none, or is pinned by digest only)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
