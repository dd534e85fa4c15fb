"""Blue/green rebuild of the read models while the live projection keeps running.

Every read model at once: both topics are replayed from offset 0 into a new generation of every
collection (in whatever order the partitions yield them: the read models are correct in any
order), caught up to what arrived meanwhile, the categories are computed from the new product
documents, and the pointer switches every reader with one write. The rebuild then catches up
once more to the then-current end of every partition, so an event the live projector applied to
the old generation in the last moments before the switch is in the new one too (version guards
make the overlap harmless).
The old generation is dropped once readers (and the live projector's batches, which resolve the
pointer once each) have had `grace_seconds` to notice. One rebuild runs at a time (a leased lock
document beside the pointer), and the switch is a compare-and-set on the pointer's revision.

One read model alone (`read_model`): only its collections are new; the pointer gains them for
that read model and every other one stays where it is. What each needs:

- `product_list`, `product_detail`: both topics are replayed into the new collection only. The
  rating figures come from the live review tally (which the live projector keeps writing), so
  the tally's revisions, which guard every copy of figures and are part of the product page's
  ETag, carry on. The live projector copies a tally change to the product documents of the
  generation its batch resolved, so after the catch-up, and again after the grace period, the
  figures of every tally are copied to the new documents (guarded by the revision, as the
  projector does). The categories aggregate the `product_detail` documents: after rebuilding
  those, every category is recomputed from the new documents at the same two moments.
- `categories`: they are computed from the live `product_detail` documents (what they are
  defined as), nothing is replayed; recomputed after the switch and after the grace period,
  since the live projector marks the categories of the generation its batch resolved.
- `reviews` is refused: the product documents copy their figures from its tally guarded by the
  tally's revision, which a rebuilt tally would start again from 1, so the product documents of
  the generation that stays would ignore the new tally's changes (and product page ETags, which
  carry the revision, would repeat); rebuild every read model instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from catalog_contracts.codec import EventDecodeError, decode_event
from catalog_contracts.events import CatalogEvent
from catalog_contracts.read_models import (
    CATEGORIES_COLLECTION,
    CATEGORY_MEMBERS_COLLECTION,
    GENERATION_COLLECTIONS,
    META_COLLECTION,
    PRODUCT_DETAIL_COLLECTION,
    RATINGS_COLLECTION,
    Generation,
    generation_from_pointer,
    generation_named,
)
from catalog_read_models import categories
from catalog_read_models.categories import Categories
from catalog_read_models.generations import (
    Db,
    Pointer,
    PointerMoved,
    fixed_generation,
    read_pointer,
    switch_pointer,
)
from catalog_read_models.product_documents import ProductDocuments, copy_figures
from catalog_read_models.projection import Projection
from catalog_read_models.registry import registry
from catalog_read_models.store import Store, open_store

T = TypeVar("T")
# Why a read model cannot be rebuilt on its own (see the module's docstring).
ALONE_REFUSED = {
    "reviews": "product_list and product_detail copy their rating figures from its review"
    " tally, guarded by the tally's revision, which a new tally would start again",
}
# The meta collection's document that says a rebuild is running (see RebuildLock).
REBUILD_LOCK_ID = "rebuild_lock"
# Catch-up rounds before the switch, each to the end offsets of its start.
PRE_SWITCH_ROUNDS = 3
# Categories recomputed and tallies copied per step (one progress step each).
CHUNK = 200


class RebuildError(Exception):
    """A rebuild refused or overtaken; its message is one line for an operator."""


class RebuildProgress(Protocol):
    """What a rebuild tells while it runs: phases with a size, steps through them, notes."""

    def phase(self, name: str, total: int, unit: str) -> None:
        """A phase of `total` units (messages, categories, products) begins."""

    def advance(self, count: int) -> None:
        """`count` more units of the current phase are done."""

    def note(self, line: str) -> None:
        """Something worth a line of its own (the switch, the drop, the result)."""


class SilentProgress:
    """Tells nothing."""

    def phase(self, name: str, total: int, unit: str) -> None:
        """Nothing."""

    def advance(self, count: int) -> None:
        """Nothing."""

    def note(self, line: str) -> None:
        """Nothing."""


class LineProgress:
    """Progress as plain lines: each note, and each phase at its start, about once a second,
    and at its end (`replay: 1,200 / 4,800 messages (25.0%)`)."""

    def __init__(self, emit: Callable[[str], None], every_seconds: float = 1.0) -> None:
        self._emit = emit
        self._every = every_seconds
        self._name = ""
        self._unit = ""
        self._total = 0
        self._done = 0
        self._last = 0.0

    def phase(self, name: str, total: int, unit: str) -> None:
        """Start counting a phase; a phase with nothing to do is told at once."""
        self._name, self._total, self._unit, self._done = name, total, unit, 0
        self._last = time.monotonic()
        if not total:
            self._line()

    def advance(self, count: int) -> None:
        """Count; tell when a second has passed or the phase is complete."""
        before = self._done
        self._done = min(self._total, self._done + count)
        now = time.monotonic()
        if (self._done == self._total and before < self._total) or now - self._last >= self._every:
            self._last = now
            self._line()

    def note(self, line: str) -> None:
        """One line."""
        self._emit(line)

    def _line(self) -> None:
        share = 100.0 * self._done / self._total if self._total else 100.0
        self._emit(f"{self._name}: {self._done:,} / {self._total:,} {self._unit} ({share:.1f}%)")


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did: the live generation before and after, and what it replayed."""

    read_model: str | None
    old: Generation
    new: Generation
    events: int
    undecodable: int
    seconds: float

    @property
    def switched(self) -> str:
        """`old -> new`, of the read model rebuilt alone or of the whole generation."""
        if self.read_model is None:
            return f"{self.old.label} -> {self.new.label}"
        model = self.read_model
        return f"{self.old.generation_of(model)} -> {self.new.generation_of(model)}"

    def summary(self) -> str:
        """One line: what was rebuilt, the generations, events, time and rate."""
        what = self.read_model or "every read model"
        if self.read_model == CATEGORIES_COLLECTION:
            return (
                f"rebuilt {what}: {self.switched}, from the product_detail documents"
                f" in {self.seconds:.1f}s"
            )
        rate = self.events / max(self.seconds, 1e-9)
        return (
            f"rebuilt {what}: {self.switched}, {self.events:,} events in {self.seconds:.1f}s"
            f" ({rate:,.0f} events/s)"
        )


def rebuildable(read_model: str | None) -> ProductDocuments | Categories | None:
    """The read model to rebuild alone (None: every one); RebuildError when there is no such
    read model or it cannot be rebuilt alone."""
    if read_model is None:
        return None
    models = {model.name: model for model in registry()}
    model = models.get(read_model)
    if model is None:
        raise RebuildError(
            f"no read model {read_model!r}: give one of {', '.join(models)} (or none for all)"
        )
    if isinstance(model, ProductDocuments | Categories):
        return model
    why = ALONE_REFUSED.get(model.name, "only product_list, product_detail and categories can be")
    raise RebuildError(
        f"{read_model} cannot be rebuilt alone: {why}; rebuild every read model (no READ_MODEL)"
    )


async def topic_partitions(bootstrap_servers: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of these topics; RebuildError when one of them does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="catalog-rebuild")
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    missing = [topic for topic in topics if not found.get(topic)]
    if missing:
        raise RebuildError(f"topic {', '.join(missing)} does not exist")
    return [TopicPartition(topic, p) for topic in topics for p in found[topic]]


class Replay:
    """Reads partitions from offset 0 and applies what it reads through a projection."""

    def __init__(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], projection: Projection
    ) -> None:
        self.consumer = consumer
        self.partitions = partitions
        self.projection = projection
        self.events = 0
        self.undecodable = 0

    async def ends(self) -> dict[TopicPartition, int]:
        """The current end offset of every partition."""
        ends: dict[TopicPartition, int] = await self.consumer.end_offsets(self.partitions)
        return ends

    async def behind(self, targets: dict[TopicPartition, int]) -> int:
        """How many offsets the replay is behind `targets`."""
        positions = {tp: await self.consumer.position(tp) for tp in targets}
        return sum(max(0, end - positions[tp]) for tp, end in targets.items())

    async def until(
        self,
        targets: dict[TopicPartition, int],
        *,
        phase: str,
        progress: RebuildProgress,
    ) -> None:
        """Apply everything up to `targets`, counting offsets (a compacted topic's gaps count
        as done)."""
        start = {tp: await self.consumer.position(tp) for tp in self.partitions}
        progress.phase(phase, sum(max(0, targets[tp] - start[tp]) for tp in targets), "messages")
        remaining = {tp for tp, end in targets.items() if start[tp] < end}
        done = 0
        while remaining:
            batches = await self.consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
            events: list[CatalogEvent] = []
            for messages in batches.values():
                # Messages past the target are applied too: the position has moved past them,
                # and the next phase starts from there.
                for message in messages:
                    try:
                        events.append(decode_event(message.value))
                    except EventDecodeError:
                        self.undecodable += 1  # the live projector dead-lettered it already
            if events:
                await self.projection.apply(events)
                self.events += len(events)
            reached = 0
            for tp, end in targets.items():
                position = await self.consumer.position(tp)
                reached += max(0, min(position, end) - start[tp])
                if position >= end:
                    remaining.discard(tp)
            if reached > done:
                progress.advance(reached - done)
                done = reached


@contextlib.asynccontextmanager
async def open_replay(
    bootstrap_servers: str, topics: Sequence[str], projection: Projection
) -> AsyncIterator[Replay]:
    """A replay of every partition of `topics` from its beginning."""
    partitions = await topic_partitions(bootstrap_servers, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="catalog-rebuild",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        yield Replay(consumer, partitions, projection)
    finally:
        await consumer.stop()


class RebuildLock:
    """One rebuild at a time: a lease on a document of the meta collection, renewed while the
    rebuild runs, so a rebuild that died stops holding it after `lease_seconds`.

    Two rebuilds at once would each settle (copy figures, recompute categories) into the
    collections of the pointer they started from, which the other may have replaced; the
    pointer's compare-and-set alone would only stop the second switch.
    """

    def __init__(self, db: Db, what: str, lease_seconds: float = 60.0) -> None:
        self.meta = db[META_COLLECTION]
        self.what = what
        self.lease = lease_seconds
        self.owner = uuid.uuid4().hex
        self.lost = False
        self._renewal: asyncio.Task[None] | None = None

    def _document(self) -> dict[str, Any]:
        now = time.time()
        return {
            "_id": REBUILD_LOCK_ID,
            "owner": self.owner,
            "what": self.what,
            "host": f"{socket.gethostname()} pid {os.getpid()}",
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "expires": now + self.lease,
        }

    async def __aenter__(self) -> RebuildLock:
        try:
            await self.meta.insert_one(self._document())
        except DuplicateKeyError:
            await self._take_expired()
        self._renewal = asyncio.create_task(self._renew())
        return self

    async def _take_expired(self) -> None:
        held = await self.meta.find_one({"_id": REBUILD_LOCK_ID})
        if held is None:  # released meanwhile
            with contextlib.suppress(DuplicateKeyError):
                await self.meta.insert_one(self._document())
                return
            held = await self.meta.find_one({"_id": REBUILD_LOCK_ID})
        if held is not None and held.get("expires", 0) < time.time():
            guard = {"_id": REBUILD_LOCK_ID, "owner": held.get("owner")}
            if (await self.meta.replace_one(guard, self._document())).matched_count:
                return
        held = held or {}
        raise RebuildError(
            f"another rebuild is running ({held.get('what', '?')}, since {held.get('since', '?')},"
            f" {held.get('host', '?')}): try again once it is done"
        )

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 6)
            with contextlib.suppress(PyMongoError):
                renewed = await self.meta.update_one(
                    {"_id": REBUILD_LOCK_ID, "owner": self.owner},
                    {"$set": {"expires": time.time() + self.lease}},
                )
                if not renewed.matched_count:
                    self.lost = True
                    return

    async def __aexit__(self, *_: object) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        with contextlib.suppress(PyMongoError):
            await self.meta.delete_one({"_id": REBUILD_LOCK_ID, "owner": self.owner})


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


async def recompute_categories(
    db: Db, store: Store, generation: Generation, progress: RebuildProgress, phase: str
) -> None:
    """Recompute every category of the generation's product documents."""
    details = db[generation.collection(PRODUCT_DETAIL_COLLECTION)]
    names: list[str] = sorted(await details.distinct("category"))
    progress.phase(phase, len(names), "categories")
    for chunk in _chunks(names):
        await categories.recompute(db, store, generation, chunk)
        progress.advance(len(chunk))


async def fold_categories(projection: Projection, progress: RebuildProgress, phase: str) -> None:
    """Fold every product change the replay wrote to the category ledger into the figures."""
    generation = await projection.generation()
    members = projection.db[generation.collection(CATEGORY_MEMBERS_COLLECTION)]
    progress.phase(phase, await members.count_documents(categories.DIRTY), "product changes")
    while folded := await projection.refresh_categories():
        progress.advance(folded)


async def copy_all_figures(
    db: Db,
    store: Store,
    model: ProductDocuments,
    generation: Generation,
    progress: RebuildProgress,
    phase: str,
) -> None:
    """Copy every tally's figures to the generation's documents of `model` where newer."""
    tallies = db[generation.collection(RATINGS_COLLECTION)]
    ids: list[str] = [d["_id"] async for d in tallies.find({}, {"_id": 1})]
    progress.phase(phase, len(ids), "products")
    documents = db[generation.collection(model.name)]
    for chunk in _chunks(ids):
        await copy_figures(model, store, documents, tallies, chunk)
        progress.advance(len(chunk))


class _Rebuild:
    """One rebuild: the generation read at its start, the one it fills, and whether it has
    switched readers to it yet."""

    def __init__(
        self,
        db: Db,
        model: ProductDocuments | Categories | None,
        pointer: Pointer | None,
        progress: RebuildProgress,
        grace_seconds: float,
        lock: RebuildLock,
    ) -> None:
        self.db = db
        self.lock = lock
        self.model = model
        self.pointer = pointer
        self.tell = progress
        self.grace_seconds = grace_seconds
        self.old = generation_from_pointer(pointer)
        name = f"g{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}{uuid.uuid4().hex[:6]}"
        if model is None:
            self.new = generation_named(name)
            logical: Sequence[str] = GENERATION_COLLECTIONS
        else:
            self.new = self.old.with_read_model(model.name, model.collections, name)
            logical = model.collections
        self.fresh = [self.new.collection(each) for each in logical]
        self.stale = [
            self.old.collection(each)
            for each in logical
            if self.old.collection(each) not in self.fresh
        ]
        self.switched = False
        self.events = 0
        self.undecodable = 0

    async def run(self, bootstrap_servers: str, topics: Sequence[str]) -> None:
        """Fill, switch, catch up, wait, settle; drop the new collections if it fails before
        the switch, the old ones once it is done."""
        store = await open_store(self.db)
        read_models = None if self.model is None else (self.model,)
        projection = Projection(self.db, store, fixed_generation(self.new), read_models=read_models)
        if self.model is None:
            self.tell.note(f"rebuilding every read model: {self.old.label} -> {self.new.name}")
        else:
            name = self.model.name
            old, new = self.old.generation_of(name), self.new.generation_of(name)
            self.tell.note(f"rebuilding {name} alone: {old} -> {new}")
        try:
            await projection.ensure_indexes()
            if isinstance(self.model, Categories):
                await self._categories(store)
            else:
                await self._replayed(store, projection, bootstrap_servers, topics)
        except BaseException:
            if not self.switched:
                with contextlib.suppress(PyMongoError):
                    for name in self.fresh:
                        await self.db.drop_collection(name)
            raise
        for name in self.stale:
            await self.db.drop_collection(name)
        if self.stale:
            self.tell.note(f"dropped {', '.join(self.stale)}")

    async def _replayed(
        self, store: Store, projection: Projection, bootstrap_servers: str, topics: Sequence[str]
    ) -> None:
        async with open_replay(bootstrap_servers, topics, projection) as replay:
            try:
                ends = await replay.ends()
                await replay.until(ends, phase="replay", progress=self.tell)
                # What arrived meanwhile, before the switch: the catch-up after it, which the
                # live projector overlaps, is then a few messages.
                for _ in range(PRE_SWITCH_ROUNDS):
                    ends = await replay.ends()
                    if not await replay.behind(ends):
                        break
                    await replay.until(ends, phase="catch-up", progress=self.tell)
                if self.model is None:
                    await fold_categories(projection, self.tell, "categories")
                await self._switch()
                ends = await replay.ends()
                await replay.until(ends, phase="final catch-up", progress=self.tell)
            finally:
                self.events, self.undecodable = replay.events, replay.undecodable
        if self.model is None:
            await fold_categories(projection, self.tell, "categories")
            await self._grace()
            return
        await self._settle(store, "")
        await self._grace()
        await self._settle(store, " after grace")

    async def _categories(self, store: Store) -> None:
        await recompute_categories(self.db, store, self.new, self.tell, "categories")
        await self._switch()
        # What the live projector marked in the old collection until its batches switched.
        await recompute_categories(self.db, store, self.new, self.tell, "catch-up")
        await self._grace()
        await recompute_categories(self.db, store, self.new, self.tell, "catch-up after grace")

    async def _settle(self, store: Store, when: str) -> None:
        """Beside a product read model rebuilt alone, the live projector changed tallies of
        the generation each batch resolved: copy every tally's figures."""
        assert isinstance(self.model, ProductDocuments)
        await copy_all_figures(self.db, store, self.model, self.new, self.tell, f"figures{when}")

    async def _switch(self) -> None:
        if self.lock.lost:
            raise RebuildError("another rebuild took the rebuild lock: nothing switched")
        try:
            await switch_pointer(self.db, self.pointer, self.new)
        except PointerMoved as exc:
            raise RebuildError(f"{exc} (another rebuild?): nothing switched") from None
        self.switched = True
        if self.model is None:
            self.tell.note(f"switched readers to {self.new.name}")
        else:
            name = self.model.name
            self.tell.note(f"switched readers of {name} to {self.new.generation_of(name)}")

    async def _grace(self) -> None:
        # Readers re-read the pointer, and the live projector's batches (each resolves it
        # once) finish, in this time.
        if self.grace_seconds > 0:
            self.tell.note(f"waiting {self.grace_seconds:g}s before dropping the old collections")
        await asyncio.sleep(self.grace_seconds)


async def rebuild(
    db: Db,
    bootstrap_servers: str,
    topics: Sequence[str],
    *,
    read_model: str | None = None,
    progress: RebuildProgress | None = None,
    grace_seconds: float = 3.0,
) -> RebuildReport:
    """Rebuild every read model, or `read_model` alone, into new collections while the live
    projection keeps running, and switch readers to them (see the module's docstring)."""
    started = time.monotonic()
    tell = progress or SilentProgress()
    model = rebuildable(read_model)
    async with RebuildLock(db, read_model or "every read model") as lock:
        job = _Rebuild(db, model, await read_pointer(db), tell, grace_seconds, lock)
        await job.run(bootstrap_servers, topics)
    report = RebuildReport(
        read_model, job.old, job.new, job.events, job.undecodable, time.monotonic() - started
    )
    tell.note(report.summary())
    return report
