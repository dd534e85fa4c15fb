"""What the relays agree on in PostgreSQL: the advisory locks that share the outbox's shards.

Outbox rows belong to one of `outbox_shards()` shards (16; migration 0004 computes a row's
shard from its message key, the product id, so one product's rows share a shard). A relay
publishes the shards whose lock it holds, `pg_try_advisory_lock(SHARD_LOCK_CLASS, shard)` on
its one connection; while it runs it holds `RELAY_LOCK_KEY` in shared mode, which counts the
running relays (each takes at most its fair share) and keeps out a relay of an earlier release,
which held that key exclusively and published every row alone.

In `pg_locks` a one-key lock shows as classid (the key's high 32 bits), objid (the low 32 bits)
and objsubid 1; a two-key lock as classid, objid and objsubid 2. Advisory locks belong to one
database: every query of them names the current one.
"""

from __future__ import annotations

from collections.abc import Iterable

RELAY_LOCK_KEY = 0x72656C6179  # "relay"
SHARD_LOCK_CLASS = 0x72656C61  # "rela"; the second key is the shard number

# The running relays: sessions holding RELAY_LOCK_KEY in shared mode.
RELAYS_SQL = """
SELECT l.pid
  FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock' AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
"""

# Every held shard lock of this database, with the session holding it.
SHARD_HOLDERS_SQL = """
SELECT l.pid, l.objid::int AS shard
  FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = $1
"""


def shard_ranges(shards: Iterable[int]) -> str:
    """Shard numbers as ranges for humans: `0-7,12`."""
    runs: list[list[int]] = []
    for shard in sorted(set(shards)):
        if runs and runs[-1][1] == shard - 1:
            runs[-1][1] = shard
        else:
            runs.append([shard, shard])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
