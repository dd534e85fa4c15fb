"""The read store as the read models meet it: which server answers, where DocumentDB differs
from MongoDB, and least privilege (the query service's user cannot write)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from catalog_read_models import categories
from catalog_read_models.store import DocumentDBStore, MongoStore, open_store, server_kind
from tests.fixtures.infra import Infra
from tests.fixtures.resources import unique

pytestmark = pytest.mark.integration

UNAUTHORIZED = 13


def _own_documentdb(infra: Infra) -> dict[str, Any]:
    """The stack's saved state, when the stack runs DocumentDB itself."""
    if infra.stack_dir is None:
        pytest.skip("needs the stack's own DocumentDB")
    state: dict[str, Any] = json.loads((Path(infra.stack_dir) / "stack.json").read_text())
    if "mongo" in state["external"]:
        pytest.skip("MongoDB is external: its users are its operator's")
    return state


def _as(state: dict[str, Any], user: str) -> AsyncMongoClient[dict[str, Any]]:
    port = state["ports"]["mongo"]
    return AsyncMongoClient(
        f"mongodb://{user}:catalog@127.0.0.1:{port}/"
        "?authMechanism=SCRAM-SHA-256&directConnection=true",
        serverSelectionTimeoutMS=5000,
    )


async def test_the_adapter_matches_the_server(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    kind = await server_kind(mongo_db)
    store = await open_store(mongo_db)
    assert type(store) is (DocumentDBStore if kind == "documentdb" else MongoStore)
    info = await mongo_db.client.admin.command("buildInfo")
    assert ("gitVersion" in info) == (kind == "mongodb")


async def test_avg_over_decimal128_is_where_the_servers_differ(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """MongoDB averages Decimal128 into a Decimal128, DocumentDB into a double. The read models
    never average money on the server (they keep integer cents and compute rating averages
    themselves), which is why the adapter needs no override for it; this pins the difference so
    a read model that starts to rely on `$avg` learns of it here."""
    collection = mongo_db["money"]
    await collection.insert_many([{"v": Decimal128("1.10")}, {"v": Decimal128("2.25")}])
    cursor = await collection.aggregate(
        [{"$group": {"_id": None, "avg": {"$avg": "$v"}, "sum": {"$sum": "$v"}}}]
    )
    (row,) = [doc async for doc in cursor]
    assert row["sum"] == Decimal128("3.35")  # both servers sum exactly
    if await server_kind(mongo_db) == "documentdb":
        assert row["avg"] == pytest.approx(1.675)
        assert isinstance(row["avg"], float)
    else:
        assert row["avg"].to_decimal() == Decimal("1.675")


async def test_a_transaction_that_raises_leaves_nothing_written(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """The category fold writes figures and members in one transaction: what it wrote before
    an error must not stay."""
    figures, members = mongo_db["figures"], mongo_db["members"]
    await figures.insert_one({"_id": "x", "n": 1})

    async def fold() -> None:
        async with mongo_db.client.start_session() as session:  # noqa: SIM117
            async with await session.start_transaction():
                await figures.update_one({"_id": "x"}, {"$inc": {"n": 1}}, session=session)
                await members.insert_one({"_id": "m"}, session=session)
                raise RuntimeError("fold failed")

    with pytest.raises(RuntimeError):
        await fold()
    assert await figures.find_one({"_id": "x"}) == {"_id": "x", "n": 1}
    assert await members.count_documents({}) == 0


async def test_a_document_written_in_a_transaction_is_locked_until_it_ends(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Folds of one category take turns: the second transaction's write of a category the
    first one wrote fails (a write conflict) instead of interleaving, and succeeds once the
    first has committed."""
    figures = mongo_db["figures"]
    await figures.insert_one({"_id": "x", "n": 0})
    client = mongo_db.client
    async with client.start_session() as first, client.start_session() as second:
        await first.start_transaction()
        await figures.update_one({"_id": "x"}, {"$inc": {"n": 1}}, session=first)
        await second.start_transaction()
        with pytest.raises(OperationFailure) as conflict:
            await figures.update_one({"_id": "x"}, {"$inc": {"n": 10}}, session=second)
        assert conflict.value.code == categories.WRITE_CONFLICT
        await second.abort_transaction()
        await first.commit_transaction()
        await second.start_transaction()
        await figures.update_one({"_id": "x"}, {"$inc": {"n": 10}}, session=second)
        await second.commit_transaction()
    assert await figures.find_one({"_id": "x"}) == {"_id": "x", "n": 11}


async def test_an_extreme_lookup_reads_a_window_of_the_folded_price_index(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    members = mongo_db["members"]
    await members.create_indexes(categories.MEMBER_INDEXES)
    await members.insert_many(
        [{"_id": str(i), "f": {"category": f"c{i % 4}", "price_cents": i}} for i in range(400)]
    )
    query = {"f.category": "c1", "f.price_cents": {"$gte": 101, "$lt": 141}}
    # Not hinted (a fold cannot fall back inside its transaction): the planner's choice.
    plan = await members.find(query).sort("f.price_cents", 1).limit(1).explain()
    text = json.dumps(plan, default=str)
    assert "COLLSCAN" not in text
    assert categories.FOLDED_PRICE_INDEX in text
    assert (await members.find(query).sort("f.price_cents", 1).limit(1).to_list())[0][
        "_id"
    ] == "101"


async def test_the_query_user_reads_and_every_write_is_refused(infra: Infra) -> None:
    state = _own_documentdb(infra)
    name = unique("privilege")
    admin = _as(state, "catalog_admin")
    reader = _as(state, "catalog_reader")
    try:
        await admin[name]["docs"].insert_one({"_id": "kept", "n": 1})
        docs = reader[name]["docs"]
        assert await docs.find_one({"_id": "kept"}) == {"_id": "kept", "n": 1}
        refused = [
            docs.insert_one({"_id": "new"}),
            docs.update_one({"_id": "kept"}, {"$set": {"n": 2}}),
            docs.delete_one({"_id": "kept"}),
            docs.create_index("n"),
            reader[name].drop_collection("docs"),
        ]
        for write in refused:
            with pytest.raises(OperationFailure) as error:
                await write
            assert error.value.code == UNAUTHORIZED
        assert await admin[name]["docs"].find_one({"_id": "kept"}) == {"_id": "kept", "n": 1}
        assert await admin[name]["docs"].count_documents({}) == 1
    finally:
        await admin.drop_database(name)
        await admin.close()
        await reader.close()


async def test_the_projector_user_writes(infra: Infra) -> None:
    state = _own_documentdb(infra)
    name = unique("projector")
    projector = _as(state, "catalog_projector")
    try:
        await projector[name]["docs"].insert_one({"_id": "p"})
        await projector[name]["docs"].create_index("n")
        assert await projector[name]["docs"].count_documents({}) == 1
    finally:
        await projector.drop_database(name)
        await projector.close()
