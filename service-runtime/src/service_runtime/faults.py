"""Crash points for the fault-injection suite, inert unless CATALOG_FAULT_DIR is set.

A test drops a file named after a crash point into that directory; the next process to pass the
point removes the file and dies on the spot, as abruptly as SIGKILL (no cleanup, no flush of
anything but the log line that proves it happened).
"""

from __future__ import annotations

import logging
import os
import sys
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
