"""The alert rules and the dashboard: promtool checks the rules and runs their unit tests, every
series they read is one the services export, and Kubernetes scrapes and alerts the same way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from command_service.metrics import CommandMetrics
from command_service.relay.relay import RelayMetrics
from projector.metrics import ProjectorMetrics
from service_runtime.middleware import HttpMetrics
from tests.deploy.manifests import REPO, Rendered, containers, label_selector_matches
from tests.deploy.service_settings import default

# deploy/local holds scripts, not a package; promtool is the local stack's own build of it.
LOCAL = str(REPO / "deploy" / "local")
if LOCAL not in sys.path:
    sys.path.insert(0, LOCAL)

import provision  # noqa: E402
from stack_engine import StackError  # noqa: E402

PROMETHEUS = REPO / "deploy" / "observability" / "prometheus"
RULES = PROMETHEUS / "rules.yaml"
RULE_TESTS = PROMETHEUS / "rules.test.yaml"
DASHBOARD = REPO / "deploy" / "observability" / "grafana" / "catalog-pipeline.json"

# The scrape jobs, as the rules name them (the local stack's and the ServiceMonitors').
JOBS = {"command", "relay", "projector", "query"}
SEVERITIES = {"page", "ticket"}


def _rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def _rule_entries() -> list[dict[str, Any]]:
    return [rule for group in _rules()["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rule_entries() if "alert" in rule]


# --- promtool -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool (Debian's prometheus package, installed on first use); a failed install fails,
    never skips."""
    try:
        provision.ensure_prometheus()
    except (StackError, OSError) as error:
        pytest.fail(f"the alert rule tests need promtool: {error}", pytrace=False)
    return provision.promtool_binary()


def _run(promtool: Path, *args: str) -> None:
    done = subprocess.run(
        [str(promtool), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_promtool_accepts_the_rules(promtool: Path) -> None:
    _run(promtool, "check", "rules", RULES.name)


def test_the_rules_unit_tests_pass(promtool: Path) -> None:
    _run(promtool, "test", "rules", RULE_TESTS.name)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it does not (below the threshold,
    or before `for` has elapsed)."""
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in _alerts():
        name = alert["alert"]
        outcomes = {bool(case.get("exp_alerts")) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: fires in some case and not in another"


# --- what every alert carries ---------------------------------------------------------------


@pytest.mark.parametrize("alert", _alerts(), ids=lambda alert: str(alert["alert"]))
def test_every_alert_has_a_severity_a_for_and_a_runbook(alert: dict[str, Any]) -> None:
    assert "for" in alert
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    assert annotations["runbook_url"] == f"README.md#runbook-{alert['alert'].lower()}"
    # The heading GitHub turns into that anchor.
    assert f"\n### Runbook: {alert['alert']}\n" in (REPO / "README.md").read_text()


def test_alert_names_are_unique() -> None:
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == len(set(names))


# --- the series the rules and the dashboard read --------------------------------------------

# The series a metric family of each type exposes (prometheus_client's text format).
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}

METRICS_CLASSES: tuple[Callable[[CollectorRegistry], object], ...] = (
    CommandMetrics,
    RelayMetrics,
    ProjectorMetrics,
    lambda registry: HttpMetrics(registry, "command"),
)


def _exported() -> set[str]:
    """Every series name some service exports, and Prometheus's own `up`."""
    names = {"up"}
    for metrics_class in METRICS_CLASSES:
        registry = CollectorRegistry()
        metrics_class(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rule_entries() if "record" in rule}


# Parts of a PromQL expression that are not series names: strings, label matchers, ranges,
# grouping label lists; what is left is series names, keywords, and functions and aggregations
# (those are followed by a parenthesis).
_NOT_NAMES = re.compile(
    r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\{[^}]*\}|\[[^\]]*\]"""
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_IDENTIFIER = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def series_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads."""
    rest = _NOT_NAMES.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(rest) if name.lower() not in _KEYWORDS}


def test_series_names_reads_promql() -> None:
    expr = """
        sum by (namespace, job) (increase(a_total{job=~"x|y", le="0.5"}[5m] offset 10m)) > 0.99
        or on (instance) group_left (pod) histogram_quantile(0.9, rate(b_bucket[$__rate_interval]))
        unless job:c:ratio_rate5m * 1e3
    """
    assert series_names(expr) == {"a_total", "b_bucket", "job:c:ratio_rate5m"}


def _dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def test_the_rules_read_only_exported_series() -> None:
    known = _exported() | _recorded()
    for rule in _rule_entries():
        unknown = series_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads {unknown}"


def test_the_rules_name_only_the_scrape_jobs() -> None:
    named = {
        job
        for rule in _rule_entries()
        for matched in re.findall(r'\bjob=~?"([^"]*)"', rule["expr"])
        for job in matched.split("|")
    }
    assert named == JOBS


def test_the_dashboard_reads_only_exported_or_recorded_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_dashboard_exprs(dashboard))
    assert exprs, "the dashboard queries nothing"
    known = _exported() | _recorded()
    for expr in exprs:
        assert series_names(expr) <= known, f"{expr} reads {series_names(expr) - known}"


def test_the_dashboard_asks_for_its_prometheus() -> None:
    """No data source is hard-wired: the dashboard imports into any Grafana."""
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            for source in [panel, *panel["targets"]]:
                assert source["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# --- Kubernetes -----------------------------------------------------------------------------


def test_the_prometheus_rule_holds_the_rules_file(rendered: Rendered) -> None:
    (rule,) = rendered.of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == _rules()["groups"], (
        "base/monitoring.yaml's PrometheusRule must hold the groups of "
        "deploy/observability/prometheus/rules.yaml as they are"
    )


def test_each_service_is_scraped_on_its_metrics_port_as_its_job(rendered: Rendered) -> None:
    scraped = {}
    for monitor in rendered.of_kind("ServiceMonitor"):
        (service,) = [
            service
            for service in rendered.of_kind("Service")
            if label_selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
        ]
        (endpoint,) = monitor["spec"]["endpoints"]
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        (deployment,) = [
            d
            for d in rendered.of_kind("Deployment")
            if label_selector_matches(
                {"matchLabels": service["spec"]["selector"]},
                d["spec"]["template"]["metadata"]["labels"],
            )
        ]
        container_ports = {
            p["name"]: p["containerPort"]
            for c in containers(deployment["spec"]["template"])
            for p in c["ports"]
        }
        (job,) = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        assert endpoint["path"] == "/metrics", job
        scraped[deployment["metadata"]["name"]] = (job, container_ports[port["targetPort"]])
    assert scraped == {
        "command-service": ("command", default("command-service", "port")),
        "relay": ("relay", default("command-service", "relay_metrics_port")),
        "projector": ("projector", default("projector", "metrics_port")),
        "query-service": ("query", default("query-service", "port")),
    }
