"""Progress bars of catalogctl's long operations: rich bars on a terminal, nothing (or plain
lines, where the operation prints them) when the output goes elsewhere."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Told the name of each step done.
Step = Callable[[str], None]


def interactive(console: Console, bar_console: Console | None) -> bool:
    """Whether bars may be drawn: both the output and the bars' console are terminals."""
    return bar_console is not None and console.is_terminal and bar_console.is_terminal


def progress_bar(console: Console) -> Progress:
    """Bars showing what, how far, how long and how much longer; gone once done."""
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


@contextlib.contextmanager
def step_bar(
    description: str, total: int, console: Console, bar_console: Console | None
) -> Iterator[Step]:
    """One bar over `total` named steps; each call of the step function is one step done."""
    if not interactive(console, bar_console) or bar_console is None:
        yield lambda _: None
        return
    with progress_bar(bar_console) as bar:
        task = bar.add_task(description, total=total)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"{description} ({name} done)")

        yield step
