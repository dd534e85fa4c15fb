"""Runs the stages in the order their data needs, then writes the three result files.

Order: the command stage first (its pace sets the later stages' rates), the relay's backlog
next (its topic is the projector's backlog), then reads, end-to-end latency, the single-model
comparison and the product page against the single model's joins. Each stage measures on the
products it seeds itself (its `products` figure); once it ends, whether it finished or not,
every product of the bench goes from both models (stages.clear_catalog), so no stage measures
on another's leftovers.
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


def describe_store(info: dict[str, Any]) -> str:
    """The read store from its `buildInfo` (DocumentDB's gateway reports no `gitVersion`, as
    catalog_read_models.store.server_kind tells them apart)."""
    version = info.get("version", "?")
    if "gitVersion" in info:
        return f"MongoDB {version}"
    return f"DocumentDB {version} (PostgreSQL 15 extensions + gateway)"


def read_model_backend(url: str) -> str:
    """Which server answers MONGODB_URL: the figures mean little without it."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        return describe_store(client.admin.command("buildInfo"))


# Every stage's figures, in the order of the report's table; null where a stage did not finish.
# `products` is the catalog the stage measured on; `failures` (and `<baseline>_failures`) count
# the failed requests, commands or events of the windows behind the figures beside them.
KEYS = {
    "command": (
        *("products", "rps", "p50_ms", "p99_ms", "failures", "raw_rps", "ratio"),
        *("single_model_rps", "single_model_ratio", "single_model_failures"),
    ),
    "relay": (
        *("products", "eps", "raw_eps", "ratio", "p50_ms", "p99_ms", "failures"),
        *("shards", "eps_2_relays"),
        *("debezium_eps", "debezium_p50_ms", "debezium_p99_ms", "debezium_failures"),
    ),
    "projector": ("products", "eps", "raw_eps", "ratio", "single_eps", "sink_eps", "failures"),
    "query": ("products", "rps", "p50_ms", "p99_ms", "failures", "raw_rps", "ratio"),
    "e2e": (
        *("products", "rate", "p50_ms", "p99_ms", "failures"),
        *("polling_p99_ms", "polling_failures"),
    ),
    "single_model": (
        *("products", "list_rps", "baseline_list_rps", "list_ratio"),
        *("categories_rps", "baseline_categories_rps", "categories_ratio"),
        *("failures", "baseline_failures"),
    ),
    "product_page": (
        *("products", "rps", "p50_ms", "p99_ms", "direct_rps", "direct_p50_ms"),
        *("baseline_rps", "baseline_p50_ms", "ratio", "failures", "baseline_failures"),
    ),
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


def clear(ctx: stages.Context, stage: str) -> None:
    """The stage's products removed; should that fail, the next stage's `products` shows it."""
    try:
        stages.clear_catalog(ctx, stage)
    except Exception:
        traceback.print_exc()
        ctx.note(stage, "removing its products failed (traceback on stdout)")


def main() -> None:
    started = time.monotonic()
    sizes = Sizes.from_env()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    chosen = [x for x in os.environ.get("BENCH_STAGES", "").split(",") if x]
    # A partial run starts the last run's stack again (its products are removed before the
    # first stage); a whole run starts a new one.
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
        if chosen:  # what the last run left
            clear(ctx, "earlier run")
        for name, stage in plan:
            say(f"stage {name}")
            stage_started = time.monotonic()
            try:
                results[name] = stage(ctx)
            except Exception:  # later stages still run; this one's figures stay null
                traceback.print_exc()
                ctx.note(name, "failed (traceback on stdout); its figures are null")
            else:
                took = time.monotonic() - stage_started
                say(f"stage {name} done in {took:.0f}s: {results[name]}")
            clear(ctx, name)
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
