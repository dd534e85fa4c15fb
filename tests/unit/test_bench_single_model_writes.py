"""The write baseline is the command service's own stack minus the outbox: the same statements
for the row, none for the outbox and no notification."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks import single_model_writes
from command_service.adapters import postgres
from command_service.handlers import CommandHandlers, CreateProduct, RequestContext
from command_service.ports import UnitOfWorkFactory
from service_runtime.tokens import DEV_SCOPES, SigningKey


class Transaction:
    async def start(self) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class Connection:
    """Records what a unit of work sends to PostgreSQL."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def transaction(self) -> Transaction:
        return Transaction()

    async def execute(self, query: str, *args: Any) -> str:
        self.statements.append(" ".join(query.split()))
        return "INSERT 0 1"


class Pool:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.closed = False

    async def acquire(self) -> Connection:
        return self.connection

    async def release(self, connection: Connection) -> None: ...

    async def close(self) -> None:
        self.closed = True


async def create(units: UnitOfWorkFactory) -> None:
    handlers = CommandHandlers(units)
    command = CreateProduct("bench 1", None, "bench-c01", Decimal("1.50"), 5)
    await handlers.create_product(command, RequestContext())


async def test_the_single_model_writes_the_row_and_nothing_to_the_outbox() -> None:
    service, baseline = Connection(), Connection()
    await create(postgres.UnitOfWorkFactory(Pool(service)))
    units = single_model_writes.UnitOfWorkFactory()
    units.pool = Pool(baseline)
    await create(units)
    assert [s for s in baseline.statements if "products" in s] == [
        s for s in service.statements if "products" in s
    ]
    assert any(s.startswith("INSERT INTO products") for s in baseline.statements)
    assert any("outbox" in s for s in service.statements)
    assert any("pg_notify" in s for s in service.statements)
    assert not any("outbox" in s or "pg_notify" in s for s in baseline.statements)


async def test_it_refuses_to_work_before_its_pool_is_open() -> None:
    with pytest.raises(AssertionError, match="not started"):
        single_model_writes.UnitOfWorkFactory()()


async def test_the_app_answers_a_command_as_the_service_does_and_writes_no_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.ensure(tmp_path)  # its JWKS beside it, which the app trusts
    monkeypatch.setenv("COMMAND_JWKS_FILE", str(tmp_path / "jwks.json"))
    monkeypatch.setenv("COMMAND_DATABASE_URL", "postgresql://bench:bench@127.0.0.1:1/bench")
    connection = Connection()
    pool = Pool(connection)

    async def create_pool(dsn: str, *, min_size: int, max_size: int) -> Pool:
        return pool

    monkeypatch.setattr(postgres, "create_pool", create_pool)
    app = single_model_writes.app()
    product = {"name": "bench 1", "category": "bench-c01", "price": "1.50", "stock": 5}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://single-model.test"
        ) as http,
    ):
        refused = await http.post("/api/v1/products", json=product)
        token = key.mint("bench", DEV_SCOPES)
        created = await http.post(
            "/api/v1/products", json=product, headers={"Authorization": f"Bearer {token}"}
        )
    assert refused.status_code == 401  # the same token check
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert any(s.startswith("INSERT INTO products") for s in connection.statements)
    assert not any("outbox" in s or "pg_notify" in s for s in connection.statements)
    assert pool.closed
