"""Offline schema validation of rendered Kubernetes objects.

Built-in kinds are checked against the Kubernetes OpenAPI schemas bundled by kubernetes-validate
(its strict variant: an unknown field is an error, as `kubectl apply` with server-side field
validation would make it). Custom resources are checked against the `openAPIV3Schema` of the
operators' CRDs, made strict the same way: an object schema that lists its properties and does
not ask to preserve unknown fields rejects any other field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

Schema = dict[str, Any]

# libyaml when PyYAML has it: the CRDs are large (Strimzi's Kafka alone is 600 kB).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What the API server checks of any object's metadata before the CRD schema applies.
_OBJECT_META: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "maxLength": 253,
            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        },
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


class SchemaCatalog:
    """Validators for the built-in kinds of one Kubernetes version and for every CRD given."""

    def __init__(self, crd_dirs: Iterable[Path], kubernetes_version: str) -> None:
        self.kubernetes_version = kubernetes_version
        self._custom: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        for directory in crd_dirs:
            for path in sorted(directory.rglob("*.yaml")):
                for document in yaml.load_all(path.read_text(), Loader=_LOADER):
                    if (
                        isinstance(document, dict)
                        and document.get("kind") == "CustomResourceDefinition"
                    ):
                        self._add_crd(document)
        if not self._custom:
            raise ValueError("no CustomResourceDefinition found in the fetched CRD sources")

    @property
    def custom_kinds(self) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every custom resource this catalog can validate."""
        return set(self._custom)

    def errors(self, obj: Mapping[str, Any]) -> list[str]:
        """Every way `obj` breaks its schema (empty when it is valid)."""
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        validator = self._custom.get(key)
        if validator is not None:
            return [
                f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
                for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            ]
        try:
            kubernetes_validate.validate(dict(obj), self.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            return [f"{'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"no schema for {key[0]} {key[1]} (neither Kubernetes nor a fetched CRD)"]
        return []

    def _add_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", False):
                continue
            openapi = version.get("schema", {}).get("openAPIV3Schema")
            if openapi is None:
                continue
            schema = strict_schema(openapi)
            schema.setdefault("properties", {})["metadata"] = _OBJECT_META
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            schema["properties"]["apiVersion"] = {"const": f"{spec['group']}/{version['name']}"}
            schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            self._custom[key] = jsonschema.Draft4Validator(schema)


def strict_schema(schema: Mapping[str, Any]) -> Schema:
    """A CRD's structural OpenAPI schema as JSON Schema (draft 4), rejecting unknown fields."""
    result: Schema = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            result[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not", "additionalProperties") and isinstance(value, Mapping):
            result[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            result[key] = [strict_schema(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        else:
            result[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [*result.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
    if schema.get("x-kubernetes-embedded-resource"):
        properties = result.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    if (
        "properties" in result
        and result.get("type") in ("object", ["object", "null"])
        and "additionalProperties" not in result
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result
