"""Runs the stages in the order their data needs, then writes the three result files.

Order: the command stage first (its outbox rows are then drained by the live pipeline), the
relay's backlog next (its topic is the projector's backlog), then reads, end-to-end latency,
then the single-model comparison, which needs 100,000 products in both models, and last the
product page against the single model's joins (it seeds and removes its own products).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks import kafka, product_page, report, stages
from benchmarks.common import (
    CPU,
    OUT_DIR,
    Sizes,
    fresh_stack,
    machine,
    say,
    stack_env,
    stackctl,
    stop_stack,
)


def read_model_backend(url: str) -> str:
    """Which server answers MONGODB_URL: the figures mean little without it."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        info = client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        backend = os.environ.get("STACK_FERRETDB_BACKEND", "postgresql")
        version = info["ferretdbVersion"]  # "unknown" when built from the Go module
        return f"FerretDB {'v1' if version == 'unknown' else version} ({backend} backend)"
    return f"MongoDB {info.get('version', '?')}"


KEYS = {
    "command": ("rps", "p50_ms", "p99_ms", "raw_rps", "ratio"),
    "relay": (
        *("eps", "raw_eps", "ratio", "p50_ms", "p99_ms", "shards", "eps_2_relays"),
        *("debezium_eps", "debezium_p50_ms", "debezium_p99_ms"),
    ),
    "projector": ("eps", "raw_eps", "ratio", "single_eps", "sink_eps"),
    "query": ("rps", "p50_ms", "p99_ms", "raw_rps", "ratio"),
    "e2e": ("rate", "p50_ms", "p99_ms", "polling_p99_ms"),
    "single_model": ("list_rps", "baseline_list_rps", "categories_rps", "baseline_categories_rps"),
    "product_page": ("rps", "p50_ms", "p99_ms", "baseline_rps", "baseline_p50_ms", "ratio"),
}


def previous_results() -> dict[str, Any]:
    try:
        previous: dict[str, Any] = json.loads((OUT_DIR / "results.json").read_text())
        return {name: previous[name] for name in KEYS if name in previous}
    except (OSError, ValueError):
        return {}


def previous_command_rps() -> float:
    """With BENCH_STAGES skipping the command stage, later stages pace from the last run's."""
    try:
        return float(json.loads((OUT_DIR / "results.json").read_text())["command"]["rps"])
    except (OSError, KeyError, TypeError, ValueError):
        return 100.0


def main() -> None:
    started = time.monotonic()
    sizes = Sizes.from_env()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    chosen = [x for x in os.environ.get("BENCH_STAGES", "").split(",") if x]
    # A partial run measures on the data the last run left; a whole run starts empty.
    fresh_stack(reuse=bool(chosen))
    ctx = stages.Context(stack_env(), sizes)
    backend = read_model_backend(ctx.mongo)
    say(f"profile {'quick' if sizes.quick else 'full'}; run {ctx.run_id}; results in {OUT_DIR}")
    results: dict[str, Any] = {}
    plan: list[tuple[str, Callable[[stages.Context], dict[str, float]]]] = [
        ("command", stages.command_stage),
        ("relay", stages.relay_stage),
        ("projector", stages.projector_stage),
        ("query", stages.query_stage),
        ("e2e", stages.e2e_stage),
        ("single_model", stages.single_model_stage),
        ("product_page", product_page.product_page_stage),
    ]
    if chosen:
        # Re-run some stages; the others keep the figures of the last run.
        plan = [(name, stage) for name, stage in plan if name in chosen]
        ctx.command_rps = previous_command_rps()
        results = previous_results()
        kept = [name for name in KEYS if name not in chosen]
        ctx.notes["earlier run"] = [f"figures of {', '.join(kept)} are from the previous run"]
    try:
        stackctl("stop", "relay")
        stackctl("stop", "projector")
        for name, stage in plan:
            say(f"stage {name}")
            stage_started = time.monotonic()
            try:
                results[name] = stage(ctx)
            except Exception:  # later stages still run; this one's figures stay null
                traceback.print_exc()
                ctx.note(name, "failed (traceback on stdout); its figures are null")
                continue
            say(f"stage {name} done in {time.monotonic() - stage_started:.0f}s: {results[name]}")
            if name == "command":
                stages.drain(ctx)
    finally:
        stages.live_stop(ctx, "relay", "projector")
        asyncio.run(kafka.delete_topics(ctx.bootstrap, f"bench.{ctx.run_id}."))
        stop_stack()  # its data stays for a partial run (BENCH_STAGES=...) until the next run
    for section, keys in KEYS.items():  # every key, null where a stage did not finish
        results[section] = {key: results.get(section, {}).get(key) for key in keys}
    results["machine"] = machine()
    results["cpu_busy_pct"] = round(CPU.pct, 1)
    report.write(OUT_DIR, results, ctx.notes, backend, sizes.quick)
    print((OUT_DIR / "report.md").read_text())
    say(f"done in {(time.monotonic() - started) / 60:.1f} min: {OUT_DIR / 'report.md'}")
