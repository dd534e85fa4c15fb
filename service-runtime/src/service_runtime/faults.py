"""Crash points and injected failures for the fault-injection suite, inert unless
CATALOG_FAULT_DIR is set.

A test drops a file named after a crash point into that directory; the next process to pass the
point removes the file and dies on the spot, as abruptly as SIGKILL (no cleanup, no flush of
anything but the log line that proves it happened).

A file `poison-<key>` makes the projector's application of the events it names fail (a bug in a
read model, say) for as long as it is there, the key being an aggregate id or a product's
category: the test removes it to "fix the cause" before replaying the dead letter.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# Crash points this code base has.
PROJECTOR_AFTER_APPLY = "projector-after-apply"  # read model written, offsets not committed
RELAY_AFTER_ACK = "relay-after-ack"  # Kafka acknowledged the batch, outbox rows not marked


def crash_point(name: str) -> None:
    """Die here if a test armed this crash point."""
    directory = os.environ.get("CATALOG_FAULT_DIR")
    if not directory:
        return
    trigger = Path(directory) / name
    try:
        trigger.unlink()
    except FileNotFoundError:
        return
    log.critical("fault injection: crashing at %s", name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(137)


POISON_PREFIX = "poison-"


class InjectedFailure(Exception):
    """A failure a test asked for (see the module's documentation)."""


def raise_injected_failure(keys: Iterable[str]) -> None:
    """Fail if a test poisoned one of these keys."""
    directory = os.environ.get("CATALOG_FAULT_DIR")
    if not directory:
        return
    try:
        names = {name for name in os.listdir(directory) if name.startswith(POISON_PREFIX)}
    except FileNotFoundError:
        return
    if not names:
        return
    for key in keys:
        if f"{POISON_PREFIX}{key}" in names:
            raise InjectedFailure(f"injected failure applying an event of {key}")
