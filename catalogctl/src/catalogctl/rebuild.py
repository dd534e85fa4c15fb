"""`catalogctl rebuild`: the read models' blue/green rebuild with a progress bar per phase."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console
from rich.progress import Progress, TaskID

from catalog_read_models.rebuild import LineProgress, RebuildProgress, RebuildReport, rebuild
from catalogctl.bars import interactive, progress_bar


class BarProgress:
    """A rebuild's phases as rich bars (one per phase), its notes as lines above them."""

    def __init__(self, bar: Progress, console: Console) -> None:
        self._bar = bar
        self._console = console
        self._task: TaskID | None = None
        self._total = 0

    def phase(self, name: str, total: int, unit: str) -> None:
        """A new bar; the last one stays, full."""
        self._finish()
        self._task = self._bar.add_task(f"{name} ({unit})", total=total)
        self._total = total

    def advance(self, count: int) -> None:
        """Move the current bar."""
        if self._task is not None:
            self._bar.advance(self._task, count)

    def note(self, line: str) -> None:
        """A line above the bars."""
        self._console.print(line, markup=False)

    def _finish(self) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._total)


async def run_rebuild(
    mongodb_url: str,
    database: str,
    bootstrap_servers: str,
    topics: Sequence[str],
    read_model: str | None,
    grace_seconds: float,
    console: Console,
    bar_console: Console,
) -> RebuildReport:
    """Rebuild, with bars on `bar_console` when both consoles are terminals, else plain lines
    on `console`."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_url, appname="catalogctl-rebuild", tz_aware=True
    )
    try:
        with contextlib.ExitStack() as stack:
            progress: RebuildProgress
            if interactive(console, bar_console):
                progress = BarProgress(stack.enter_context(progress_bar(bar_console)), console)
            else:
                progress = LineProgress(lambda line: console.print(line, markup=False))
            return await rebuild(
                client[database],
                bootstrap_servers,
                topics,
                read_model=read_model,
                progress=progress,
                grace_seconds=grace_seconds,
            )
    finally:
        await client.close()
