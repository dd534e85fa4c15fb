"""The fault suite: each scenario under a steady mixed load, then the invariant checker.

Sizes come from FAULTS_PROFILE: `short` (the default, inside `make test`), `full`
(`make test-faults`, thousands of commands per scenario) or `soak` (`make soak`, minutes of
load around each fault). Every scenario adds a row to
.run/faults/report.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.faults.checker import converge
from tests.faults.load import run_load
from tests.faults.scenarios import SCENARIOS
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.faults

PROFILES = {
    "short": {"clients": 3, "rate": 8.0, "before": 2.0, "after": 4.0, "converge": 120.0},
    "full": {"clients": 8, "rate": 12.0, "before": 15.0, "after": 30.0, "converge": 300.0},
    "soak": {"clients": 8, "rate": 12.0, "before": 60.0, "after": 300.0, "converge": 900.0},
}
REPORT = Path(__file__).resolve().parents[2] / ".run" / "faults" / "report.md"
HEADER = (
    "| scenario | commands sent | acknowledged | client errors | dead-lettered | behind | "
    "different | category mismatches | converged in |\n|---|---|---|---|---|---|---|---|---|\n"
)


@pytest.fixture(scope="module")
def report() -> Path:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    profile = os.environ.get("FAULTS_PROFILE", "short")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    REPORT.write_text(f"# Fault suite report\n\nProfile `{profile}`, {when}.\n\n" + HEADER)
    return REPORT


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_scenario_keeps_every_invariant(infra: Infra, report: Path, scenario: str) -> None:
    if infra.stack_dir is None:
        pytest.skip("fault injection needs control over the stack (native or testcontainers)")
    size = PROFILES[os.environ.get("FAULTS_PROFILE", "short")]
    stop = asyncio.Event()
    prefix = "faults-" + scenario.split()[0]
    load = asyncio.create_task(
        run_load(
            infra.gateway_url,
            stop,
            clients=int(size["clients"]),
            rate=size["rate"],
            seed=hash(scenario) % 1000,
            prefix=prefix,
            bearer=infra.bearer,
        )
    )
    await asyncio.sleep(size["before"])
    try:
        outcome = await SCENARIOS[scenario](infra)
        await asyncio.sleep(size["after"])
    finally:
        stop.set()
        log = await load
    verdict = await converge(infra, log, seconds=size["converge"])
    converged = (
        f"{verdict.converged_after:.1f}s" if verdict.converged_after is not None else "never"
    )
    with report.open("a") as out:
        out.write(
            f"| {scenario} | {log.sent} | {log.acknowledged} | {log.errors} | "
            f"{outcome.dead_lettered} | {verdict.behind} | {verdict.different} | "
            f"{verdict.category_mismatches} | {converged} |\n"
        )
    assert log.acknowledged > 0
    assert log.unauthorized == 0, "the load clients' tokens were refused"
    assert verdict.missing_acknowledged == []
    assert log.monotonic_violations == []
    assert verdict.comparison.consistent, f"{verdict.comparison.summary()}\n{_diagnostics(infra)}"


def _diagnostics(infra: Infra) -> str:
    """The tails of the pipeline's logs, so a failure in CI says where it got stuck."""
    assert infra.stack_dir is not None
    parts = []
    for name in ("relay", "projector", "kafka"):
        log = Path(infra.stack_dir) / "logs" / f"{name}.log"
        lines = log.read_text(errors="replace").splitlines()[-25:] if log.exists() else []
        parts.append(f"--- {name}.log\n" + "\n".join(lines))
    return "\n".join(parts)
