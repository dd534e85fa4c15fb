"""Every overlay renders, and every object in it is valid for its schema, offline."""

from __future__ import annotations

from tests.deploy.manifests import OVERLAYS, Rendered
from tests.deploy.schemas import SchemaCatalog
from tests.deploy.toolchain import CRD_SOURCES


def test_both_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_every_object_matches_its_schema(rendered: Rendered, schema_catalog: SchemaCatalog) -> None:
    problems = {
        f"{obj['kind']}/{obj['metadata']['name']}": errors
        for obj in rendered.objects
        if (errors := schema_catalog.errors(obj))
    }
    assert not problems, f"overlay {rendered.overlay}: {problems}"


# The custom resources the manifests use, each validated against its operator's CRD.
OPERATOR_KINDS = {
    ("kafka.strimzi.io/v1", "Kafka"),
    ("kafka.strimzi.io/v1", "KafkaNodePool"),
    ("kafka.strimzi.io/v1", "KafkaTopic"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def test_every_operator_kind_is_checked_against_a_fetched_crd(
    rendered: Rendered, schema_catalog: SchemaCatalog
) -> None:
    missing = OPERATOR_KINDS - schema_catalog.custom_kinds
    assert not missing, f"no CRD among {[s.key for s in CRD_SOURCES]} for {missing}"
    used = {(obj["apiVersion"], obj["kind"]) for obj in rendered.objects}
    assert used >= OPERATOR_KINDS, f"{rendered.overlay} lacks {OPERATOR_KINDS - used}"


def test_the_operators_resources_are_there(rendered: Rendered) -> None:
    kinds = {obj["kind"] for obj in rendered.objects}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "MongoDBCommunity"} <= kinds
    assert {"ScaledObject", "Gateway", "HTTPRoute"} <= kinds
    assert "StatefulSet" not in kinds, "the stateful dependencies come from operators"
