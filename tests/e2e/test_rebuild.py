"""`catalogctl rebuild` against the whole stack while commands keep arriving through the gateway:
readers switch to the new collections (only the named read model's, when one is named), the old
ones are dropped, and afterwards the query API serves every product and review exactly as the
write model says (`catalogctl reconcile` finds no difference)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from catalog_contracts.read_models import (
    GENERATION_COLLECTIONS,
    GENERATION_POINTER_ID,
    META_COLLECTION,
    PRODUCT_LIST_COLLECTION,
    Generation,
    generation_from_pointer,
)
from tests.fixtures.cli import catalogctl
from tests.fixtures.infra import Infra

pytestmark = pytest.mark.e2e

LIVE = [name for name in GENERATION_COLLECTIONS if name != "products"]


@dataclass
class Catalog:
    """What this test wrote through the API: each product's newest version and its category,
    and the published reviews per product."""

    category: str
    versions: dict[str, int] = field(default_factory=dict)
    reviews: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, product_id: str, version: int) -> None:
        with self.lock:
            self.versions[product_id] = max(version, self.versions.get(product_id, 0))


def command(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A command, tried again while the gateway's rate limit refuses it."""
    for _ in range(50):
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", "0.2")))
    return response


def write_some(client: httpx.Client, infra: Infra, catalog: Catalog, count: int, tag: str) -> None:
    """Create `count` products, change some, and review some of them."""
    for i in range(count):
        body = {"name": f"{tag}-{i}", "category": catalog.category, "price": f"{i + 1}.50"}
        created = command(client, "POST", "/api/v1/products", json={**body, "stock": 5})
        assert created.status_code == 201, created.text
        product_id = created.json()["id"]
        catalog.saw(product_id, 1)
        if i % 2:
            adjusted = command(
                client,
                "POST",
                f"/api/v1/products/{product_id}/stock-adjustments",
                json={"quantity_change": -(i % 5) - 1},
            )
            assert adjusted.status_code == 200, adjusted.text
            catalog.saw(product_id, adjusted.json()["version"])
        if i % 3 == 0:
            author = f"{tag}-{i}-reviewer"
            reviewed = command(
                client,
                "POST",
                f"/api/v1/products/{product_id}/reviews",
                json={"rating": 1 + i % 5, "title": "Fine"},
                headers=infra.bearer(author),
            )
            assert reviewed.status_code == 201, reviewed.text
            with catalog.lock:
                catalog.reviews.setdefault(product_id, set()).add(reviewed.json()["id"])


@contextlib.contextmanager
def commands_arriving(infra: Infra, catalog: Catalog) -> Iterator[None]:
    """Commands through the gateway, a few per second, until the block ends."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_writing() -> None:
        with httpx.Client(base_url=infra.gateway_url, timeout=15, headers=infra.auth) as client:
            for round_ in itertools.count():
                if stop.is_set():
                    return
                try:
                    write_some(client, infra, catalog, 3, f"during-{round_}")
                except BaseException as exc:  # reported by the test, not lost in the thread
                    failures.append(exc)
                    return
                time.sleep(0.05)

    writer = threading.Thread(target=keep_writing, name="commands", daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join(60)
    assert not failures, failures
    assert not writer.is_alive()


def database(infra: Infra) -> str:
    """The stack's MongoDB database (MONGODB_DATABASE of its stack.env)."""
    assert infra.stack_dir is not None
    for line in (Path(infra.stack_dir) / "stack.env").read_text().splitlines():
        if line.startswith("MONGODB_DATABASE="):
            return line.split("=", 1)[1]
    return "catalog"


@pytest.fixture
def mongo(infra: Infra) -> Iterator[Any]:
    """The stack's read-model database."""
    if infra.stack_dir is None:
        pytest.skip("TEST_INFRA=external: catalogctl needs the stack's stack.env")
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_url)
    try:
        yield client[database(infra)]
    finally:
        client.close()


def live(mongo: Any) -> Generation:
    return generation_from_pointer(mongo[META_COLLECTION].find_one({"_id": GENERATION_POINTER_ID}))


def rebuilt(infra: Infra, *args: str) -> str:
    done = catalogctl(infra, "rebuild", *args, "--grace-seconds", "1")
    assert "Traceback" not in done.stderr
    return done.stdout


def quiet_and_consistent(infra: Infra, seconds: float = 60) -> None:
    """Once the pipeline has applied everything, reconcile finds no difference."""
    deadline = time.monotonic() + seconds
    while True:
        done = catalogctl(infra, "reconcile", check=False)
        if done.returncode == 0:
            assert "consistent with the write model" in done.stdout
            return
        assert done.returncode == 1, done.stderr
        assert time.monotonic() < deadline, f"still inconsistent: {done.stdout}"
        time.sleep(1)


def served_as_written(client: httpx.Client, catalog: Catalog) -> None:
    """Every product of the test at its newest version, with its reviews, through the API."""
    for product_id, version in catalog.versions.items():
        page = client.get(f"/api/v1/products/{product_id}", params={"min_version": version})
        assert page.status_code == 200, page.text
        assert page.json()["version"] == version
        assert page.json()["rating"]["count"] == len(catalog.reviews.get(product_id, ()))
    listed: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"category": catalog.category, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/v1/products", params=params).json()
        listed += body["items"]
        if not (cursor := body["next_cursor"]):
            break
    assert {item["id"] for item in listed} == set(catalog.versions)
    for item in listed:
        assert item["rating_count"] == len(catalog.reviews.get(item["id"], ()))
    for product_id, reviews in catalog.reviews.items():
        page = client.get(f"/api/v1/products/{product_id}/reviews").json()
        assert {r["id"] for r in page["items"]} == reviews


def test_rebuild_of_every_read_model_while_commands_arrive(
    client: httpx.Client, infra: Infra, mongo: Any
) -> None:
    catalog = Catalog(f"rebuild-{uuid.uuid4().hex[:8]}")
    write_some(client, infra, catalog, 12, "before")
    before = live(mongo)
    with commands_arriving(infra, catalog):
        output = rebuilt(infra)
    after = live(mongo)
    assert len(catalog.versions) > 12  # some were created while the rebuild ran

    assert after.name != before.name
    assert after.models == {}
    assert all(after.collection(name) == f"{name}_{after.name}" for name in LIVE)
    names = set(mongo.list_collection_names())
    assert not {before.collection(name) for name in LIVE} & names
    lines = output.splitlines()
    assert any(line.startswith("replay: ") and line.endswith("(100.0%)") for line in lines)
    assert f"switched readers to {after.name}" in lines
    [summary] = [line for line in lines if line.startswith("rebuilt ")]
    assert summary.startswith(f"rebuilt every read model: {before.label} -> {after.name}, ")
    assert summary.endswith(" events/s)")
    quiet_and_consistent(infra)
    served_as_written(client, catalog)


def test_rebuild_of_one_read_model_moves_only_its_collections(
    client: httpx.Client, infra: Infra, mongo: Any
) -> None:
    catalog = Catalog(f"rebuild-{uuid.uuid4().hex[:8]}")
    write_some(client, infra, catalog, 12, "before")
    before = live(mongo)
    with commands_arriving(infra, catalog):
        output = rebuilt(infra, PRODUCT_LIST_COLLECTION)
    after = live(mongo)
    assert len(catalog.versions) > 12

    new = after.generation_of(PRODUCT_LIST_COLLECTION)
    assert new != before.generation_of(PRODUCT_LIST_COLLECTION)
    assert after.name == before.name
    assert dict(after.models) == {**before.models, PRODUCT_LIST_COLLECTION: new}
    assert after.collection(PRODUCT_LIST_COLLECTION) == f"{PRODUCT_LIST_COLLECTION}_{new}"
    for name in LIVE:
        if name != PRODUCT_LIST_COLLECTION:
            assert after.collection(name) == before.collection(name), name
    names = set(mongo.list_collection_names())
    assert before.collection(PRODUCT_LIST_COLLECTION) not in names
    assert {after.collection(name) for name in LIVE} <= names
    [summary] = [line for line in output.splitlines() if line.startswith("rebuilt ")]
    old = before.generation_of(PRODUCT_LIST_COLLECTION)
    assert summary.startswith(f"rebuilt product_list: {old} -> {new}, ")
    quiet_and_consistent(infra)
    served_as_written(client, catalog)


def test_rebuild_errors_are_one_line(infra: Infra, mongo: Any) -> None:
    before = live(mongo)
    unknown = catalogctl(infra, "rebuild", "prodcut_list", check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "catalogctl: no read model 'prodcut_list': give one of reviews, product_list,"
        " product_detail, categories (or none for all)"
    ]
    refused = catalogctl(infra, "rebuild", "reviews", check=False)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("catalogctl: reviews cannot be rebuilt alone: ")
    assert live(mongo) == before
