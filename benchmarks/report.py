"""results.json, report.md (figures, targets, met or missed) and report.png (charts)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    text: str
    check: Callable[[Results], bool]


TARGETS = [
    Target("command ≥ 0.6 of raw", lambda r: r["command"]["ratio"] >= 0.6),
    Target("relay ≥ 0.7 of raw", lambda r: r["relay"]["ratio"] >= 0.7),
    Target("relay ≥ 3x the command rate", lambda r: r["relay"]["eps"] >= 3 * r["command"]["rps"]),
    Target(
        "relay commit-to-topic p99 ≤ Debezium's",
        lambda r: r["relay"]["p99_ms"] <= r["relay"]["debezium_p99_ms"],
    ),
    Target("projector ≥ 0.5 of raw", lambda r: r["projector"]["ratio"] >= 0.5),
    Target(
        "projector ≥ the sink connector's events/s",
        lambda r: r["projector"]["eps"] >= r["projector"]["sink_eps"],
    ),
    Target(
        "projector ≥ 10x one-at-a-time",
        lambda r: r["projector"]["eps"] >= 10 * r["projector"]["single_eps"],
    ),
    Target("query ≥ 0.5 of raw", lambda r: r["query"]["ratio"] >= 0.5),
    Target("end to end p50 ≤ 25 ms", lambda r: r["e2e"]["p50_ms"] <= 25),
    Target("end to end p99 ≤ 100 ms", lambda r: r["e2e"]["p99_ms"] <= 100),
    Target(
        "end to end p99 ≤ 0.2x polling p99",
        lambda r: r["e2e"]["p99_ms"] <= 0.2 * r["e2e"]["polling_p99_ms"],
    ),
    Target(
        "list ≥ 2x single model",
        lambda r: r["single_model"]["list_rps"] >= 2 * r["single_model"]["baseline_list_rps"],
    ),
    Target(
        "category statistics ≥ 10x single model",
        lambda r: (
            r["single_model"]["categories_rps"] >= 10 * r["single_model"]["baseline_categories_rps"]
        ),
    ),
    # The ratio of back-to-back pairs, like the raw baselines' targets.
    Target("product page ≥ 3x single model", lambda r: r["product_page"]["ratio"] >= 3),
]


def verdicts(results: Results) -> list[tuple[str, str]]:
    out = []
    for target in TARGETS:
        try:
            out.append((target.text, "met" if target.check(results) else "**missed**"))
        except (KeyError, TypeError):  # a stage that did not finish has null figures
            out.append((target.text, "not measured"))
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _per_second(value: Any) -> str:
    return "not measured" if value is None else f"{_fmt(value)} events/s"


def _latency(p50: Any, p99: Any) -> str:
    if p50 is None or p99 is None:
        return "not measured"
    return f"p50 {_fmt(p50)} ms, p99 {_fmt(p99)} ms"


def peers(results: Results) -> list[str]:
    """Our relay and projector beside the industry's tools doing the same job, same run."""
    relay, projector = results.get("relay", {}), results.get("projector", {})
    return [
        "## Beside the industry's peers",
        "",
        "Same machine, same run, same data: the relay stage's backlog and paced commits, and the "
        "projector stage's topic.",
        "",
        "| comparison | ours | peer |",
        "| --- | --- | --- |",
        f"| relay: ours vs Debezium (backlog) | {_per_second(relay.get('eps'))} "
        f"| {_per_second(relay.get('debezium_eps'))} |",
        f"| relay: ours vs Debezium (commit to topic, paced) "
        f"| {_latency(relay.get('p50_ms'), relay.get('p99_ms'))} "
        f"| {_latency(relay.get('debezium_p50_ms'), relay.get('debezium_p99_ms'))} |",
        f"| projector: ours vs sink connector | {_per_second(projector.get('eps'))} "
        f"| {_per_second(projector.get('sink_eps'))} |",
        "",
        "- **relay**: ours claims unpublished outbox rows by shard (LISTEN/NOTIFY, polling as a "
        "fallback), publishes them and marks each row published with an UPDATE. Debezium 3.6.1 "
        "(Kafka Connect standalone, PostgreSQL connector, pgoutput) reads the inserts from the "
        "WAL through a replication slot and its outbox event router turns each row into a "
        "message (key aggregate_id, value the payload); it writes nothing back to the table. "
        "Its settings are the defaults but poll.interval.ms 10 (500 would add up to half a "
        "second whenever its queue runs empty).",
        "- **projector**: ours keeps version guards (a product event writes only over an older "
        "version, so a replayed or late event is skipped) and applies each event to four read "
        "models (product list, product detail, review tallies, category figures). MongoDB's "
        "Kafka sink connector 2.0.1 replaces one document per event (the event's JSON, _id = "
        "aggregate_id, upserted) in one collection, with no version check. It runs two tasks "
        "(the default is one; ours applies up to 6 partitions side by side) of at most 25 "
        "writes per bulk, as FerretDB v1 hangs on the default 500.",
        "",
    ]


def markdown(results: Results, notes: dict[str, list[str]], backend: str, quick: bool) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Machine: {results['machine']['cores']} cores, {results['machine']['cpu_model']}; "
        f"CPU busy during the measurements: {results['cpu_busy_pct']:.0f}%. "
        f"Read-model server: {backend}. Profile: {'quick' if quick else 'full'}.",
        "",
        "| stage | figure | value |",
        "| --- | --- | --- |",
    ]
    for stage in ("command", "relay", "projector", "query", "e2e", "single_model", "product_page"):
        for key, value in results.get(stage, {}).items():
            lines.append(f"| {stage} | {key} | {_fmt(value)} |")
    lines += ["", *peers(results)]
    lines += ["| target | result |", "| --- | --- |"]
    lines += [f"| {text} | {verdict} |" for text, verdict in verdicts(results)]
    lines += ["", "## Each repetition", ""]
    for stage, stage_notes in notes.items():
        lines.append(f"- **{stage}**")
        lines += [f"  - {line}" for line in stage_notes]
    return "\n".join(lines) + "\n"


def chart(results: Results, path: Path) -> None:
    """Throughput of each stage beside its baseline, and the latencies, on one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    pairs = [
        ("command", "rps", "raw_rps"),
        ("relay", "eps", "raw_eps"),
        ("projector", "eps", "raw_eps"),
        ("query", "rps", "raw_rps"),
        ("single_model", "list_rps", "baseline_list_rps"),
        ("single_model", "categories_rps", "baseline_categories_rps"),
        ("product_page", "rps", "baseline_rps"),
    ]
    peer_keys = {("relay", "eps"): "debezium_eps", ("projector", "eps"): "sink_eps"}
    labels, ours, base, peer = [], [], [], []
    for stage, mine, theirs in pairs:
        figures = results.get(stage, {})
        if figures.get(mine) is not None and figures.get(theirs) is not None:
            labels.append(f"{stage}\n{mine}")
            ours.append(figures[mine])
            base.append(figures[theirs])
            theirs_peer = figures.get(peer_keys.get((stage, mine), ""))
            peer.append(float("nan") if theirs_peer is None else theirs_peer)
    x = range(len(labels))
    left.bar([i - 0.27 for i in x], ours, 0.27, label="ours")
    left.bar(list(x), base, 0.27, label="baseline (raw driver / single model)")
    left.bar([i + 0.27 for i in x], peer, 0.27, label="peer (Debezium / MongoDB sink connector)")
    left.set_yscale("log")
    left.set_xticks(list(x), labels, fontsize=8)
    left.set_ylabel("per second (log scale)")
    left.set_title("Throughput, side by side")
    left.legend(fontsize=8)

    latencies = [
        ("command", "p50_ms", "p99_ms"),
        ("query", "p50_ms", "p99_ms"),
        ("relay", "p50_ms", "p99_ms"),
        ("e2e", "p50_ms", "p99_ms"),
        ("product_page", "p50_ms", "p99_ms"),
    ]
    labels, p50, p99 = [], [], []
    for stage, a, b in latencies:
        figures = results.get(stage, {})
        if figures.get(a) is not None and figures.get(b) is not None:
            labels.append(stage)
            p50.append(figures[a])
            p99.append(figures[b])
    relay = results.get("relay", {})
    if relay.get("debezium_p50_ms") is not None and relay.get("debezium_p99_ms") is not None:
        labels.append("relay\nDebezium")
        p50.append(relay["debezium_p50_ms"])
        p99.append(relay["debezium_p99_ms"])
    if results.get("e2e", {}).get("polling_p99_ms") is not None:
        labels.append("e2e polling")
        p50.append(0)
        p99.append(results["e2e"]["polling_p99_ms"])
    x = range(len(labels))
    right.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    right.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
    right.set_xticks(list(x), labels, fontsize=8)
    right.set_ylabel("milliseconds")
    right.set_title("Latency")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(
    out: Path, results: Results, notes: dict[str, list[str]], backend: str, quick: bool
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(markdown(results, notes, backend, quick))
    chart(results, out / "report.png")
