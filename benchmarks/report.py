"""results.json, report.md (figures, targets, met or missed) and report.png (charts)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal: the figure `measured` reads is at least `goal` (at most, for a latency)."""

    text: str
    stage: str
    measured: Callable[[Results], float]
    goal: float
    at_most: bool = False
    unit: str = "x"  # "x": a ratio; "ms": a latency
    failures: tuple[str, ...] = ("failures",)  # the stage's failure counts behind the figure
    window: str = ""  # the note of our window whose CPU split says what dominates

    def met(self, results: Results) -> bool:
        value = self.measured(results)
        return value <= self.goal if self.at_most else value >= self.goal


def figure(stage: str, key: str) -> Callable[[Results], float]:
    return lambda r: float(r[stage][key])


def over(mine: tuple[str, str], theirs: tuple[str, str]) -> Callable[[Results], float]:
    """One figure over another, e.g. the relay's events/s over the command rate."""
    return lambda r: float(r[mine[0]][mine[1]]) / float(r[theirs[0]][theirs[1]])


TARGETS = [
    Target(
        "command ≥ 0.8x the single model's writes (same FastAPI stack, no outbox)",
        "command",
        figure("command", "single_model_ratio"),
        0.8,
        failures=("failures", "single_model_failures"),
        window="gateway window",
    ),
    Target(
        "command ≥ 0.6 of raw asyncpg",
        "command",
        figure("command", "ratio"),
        0.6,
        window="gateway window",
    ),
    Target(
        "relay ≥ 0.7 of raw",
        "relay",
        figure("relay", "ratio"),
        0.7,
        failures=(),
        window="relay window",
    ),
    Target(
        "relay ≥ 3x the command rate",
        "relay",
        over(("relay", "eps"), ("command", "rps")),
        3,
        failures=(),
        window="relay window",
    ),
    Target(
        "relay commit-to-topic p99 ≤ Debezium's",
        "relay",
        over(("relay", "p99_ms"), ("relay", "debezium_p99_ms")),
        1.0,
        at_most=True,
        failures=("failures", "debezium_failures"),
        window="relay window",
    ),
    Target(
        "projector ≥ the MongoDB sink connector's events/s",
        "projector",
        over(("projector", "eps"), ("projector", "sink_eps")),
        1.0,
        window="projector window",
    ),
    Target(
        "projector ≥ 0.5 of raw bulk_write",
        "projector",
        figure("projector", "ratio"),
        0.5,
        window="projector window",
    ),
    Target(
        "projector ≥ 10x one-at-a-time",
        "projector",
        over(("projector", "eps"), ("projector", "single_eps")),
        10,
        window="projector window",
    ),
    Target(
        "query ≥ 0.7 of raw PyMongo",
        "query",
        figure("query", "ratio"),
        0.7,
        window="gateway window",
    ),
    Target(
        "end to end p50 ≤ 25 ms (at 25% of the command rate)",
        "e2e",
        figure("e2e", "p50_ms"),
        25,
        at_most=True,
        unit="ms",
        window="notify window",
    ),
    Target(
        "end to end p99 ≤ 100 ms",
        "e2e",
        figure("e2e", "p99_ms"),
        100,
        at_most=True,
        unit="ms",
        window="notify window",
    ),
    Target(
        "end to end p99 ≤ 0.2x the 500 ms polling p99",
        "e2e",
        over(("e2e", "p99_ms"), ("e2e", "polling_p99_ms")),
        0.2,
        at_most=True,
        failures=("failures", "polling_failures"),
        window="notify window",
    ),
    Target(
        "category list sorted by price ≥ 1.0x single model",
        "single_model",
        figure("single_model", "list_ratio"),
        1.0,
        failures=("failures", "baseline_failures"),
        window="list window",
    ),
    Target(
        "category statistics ≥ 10x single model",
        "single_model",
        figure("single_model", "categories_ratio"),
        10,
        failures=("failures", "baseline_failures"),
        window="categories window",
    ),
    # Both without the gateway: the same layers (the page through it is `rps`).
    Target(
        "product page ≥ 1.0x single model (both asked without the gateway)",
        "product_page",
        figure("product_page", "ratio"),
        1.0,
        failures=("failures", "baseline_failures"),
        window="query service (no gateway) window",
    ),
]


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    measured: str
    result: str  # met, **missed** or not measured
    failures: str
    dominates: str  # for a missed target: what took the CPU of our window


def verdicts(results: Results, notes: Mapping[str, list[str]] | None = None) -> list[Verdict]:
    out = []
    for target in TARGETS:
        failed = failure_counts(results.get(target.stage, {}), target.failures)
        try:
            value, met = target.measured(results), target.met(results)
        except (KeyError, TypeError, ZeroDivisionError):  # a stage that did not finish: nulls
            out.append(Verdict(target.text, "—", "not measured", failed, ""))
            continue
        shown = f"{value:,.1f} ms" if target.unit == "ms" else f"{value:,.2f}x"
        dominates = "" if met else dominant((notes or {}).get(target.stage, []), target.window)
        out.append(Verdict(target.text, shown, "met" if met else "**missed**", failed, dominates))
    return out


def failure_counts(figures: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """e.g. "ours 0, baseline 3"; "—" where no failures are counted for the figure."""
    shown = []
    for key in keys:
        label = "ours" if key == "failures" else key.removesuffix("_failures").replace("_", " ")
        count = figures.get(key)
        shown.append(f"{label} {'not measured' if count is None else f'{count:,}'}")
    return ", ".join(shown) or "—"


def dominant(notes: list[str], window: str, top: int = 3) -> str:
    """The busiest parts of our window ("<window>, cores busy: a 0.90, b 0.40, ...") and the
    busiest packages of the stage's first profile ("profile x (n samples): p 40%, ...")."""
    found = []
    cpu = next((n for n in notes if n.startswith(window) and "cores busy: " in n), None)
    if window and cpu is not None:
        busiest = cpu.split("cores busy: ", 1)[1].split(", ")[:top]
        found.append(f"cores busy: {', '.join(busiest)}")
    profile = next((n for n in notes if n.startswith("profile ") and "): " in n), None)
    if profile is not None:
        name = profile.split(" (", 1)[0]
        found.append(f"{name}: {', '.join(profile.split('): ', 1)[1].split(', ')[:top])}")
    return "; ".join(found)


# Which failure count stands beside which figures. The others count none: ratios, sizes and
# rates set by the harness, the raw drivers' figures (their first failure stops the stage),
# the relay's backlog (a relay that does not drain it stops the stage) and the peers'.
BESIDE: dict[str, dict[str, tuple[str, ...]]] = {
    "command": {
        "failures": ("rps", "p50_ms", "p99_ms"),
        "single_model_failures": ("single_model_rps",),
    },
    "relay": {
        "failures": ("p50_ms", "p99_ms"),
        "debezium_failures": ("debezium_p50_ms", "debezium_p99_ms"),
    },
    "projector": {"failures": ("eps", "single_eps")},
    "query": {"failures": ("rps", "p50_ms", "p99_ms")},
    "e2e": {"failures": ("p50_ms", "p99_ms"), "polling_failures": ("polling_p99_ms",)},
    "single_model": {
        "failures": ("list_rps", "categories_rps"),
        "baseline_failures": ("baseline_list_rps", "baseline_categories_rps"),
    },
    "product_page": {
        "failures": ("rps", "p50_ms", "p99_ms", "direct_rps", "direct_p50_ms"),
        "baseline_failures": ("baseline_rps", "baseline_p50_ms"),
    },
}
FAILURES_LEGEND = (
    "Failures beside each figure: the failed requests (a status outside 2xx/3xx, a timeout, a "
    "socket error), commands or events (dead-lettered; or not readable, not on the topic, "
    "within the window, and then counted at the window's length) of the windows behind it; "
    "— where none are counted. End-to-end and commit-to-topic percentiles are pooled over "
    "every repetition's samples; wrk's (command, query, product page) are the median of each "
    "repetition's."
)


def figure_rows(stage: str, figures: Mapping[str, Any]) -> list[str]:
    """The stage's figures, each with the failures behind it; the counts are not rows."""
    beside = {key: count for count, keys in BESIDE.get(stage, {}).items() for key in keys}
    rows = []
    for key, value in figures.items():
        if key == "failures" or key.endswith("_failures"):
            continue
        failures = _fmt(figures.get(beside[key])) if key in beside else "—"
        rows.append(f"| {stage} | {key} | {_fmt(value)} | {failures} |")
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
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
        "(the default is one; ours applies up to 6 partitions side by side), each writing a "
        "poll's records (up to 500) in one bulk, its default.",
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
        "Each stage measures on its own catalog (`products`: what it seeded, or the relay's "
        "and projector's backlog), removed with bulk deletes once it ends.",
        "",
        "| stage | figure | value | failures |",
        "| --- | --- | --- | --- |",
    ]
    for stage in ("command", "relay", "projector", "query", "e2e", "single_model", "product_page"):
        lines += figure_rows(stage, results.get(stage, {}))
    lines += ["", FAILURES_LEGEND, "", *peers(results)]
    lines += [
        "## Targets",
        "",
        "| target | measured | result | failures | what dominates (when missed) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {v.target} | {v.measured} | {v.result} | {v.failures} | {v.dominates} |"
        for v in verdicts(results, notes)
    ]
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
        ("command", "rps", "single_model_rps"),
        ("relay", "eps", "raw_eps"),
        ("projector", "eps", "raw_eps"),
        ("query", "rps", "raw_rps"),
        ("single_model", "list_rps", "baseline_list_rps"),
        ("single_model", "categories_rps", "baseline_categories_rps"),
        ("product_page", "direct_rps", "baseline_rps"),
    ]
    peer_keys = {("relay", "eps"): "debezium_eps", ("projector", "eps"): "sink_eps"}
    labels, ours, base, peer = [], [], [], []
    for stage, mine, theirs in pairs:
        figures = results.get(stage, {})
        if figures.get(mine) is not None and figures.get(theirs) is not None:
            labels.append(f"{stage}\n{mine} vs {theirs.removesuffix('_rps')}")
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
