"""asyncpg adapters of the write side's ports: products, outbox, idempotency keys, unit of work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg
import orjson

from catalog_contracts.codec import event_to_document
from catalog_contracts.events import CatalogEvent, event_headers, message_key
from command_service.domain.model import Product
from command_service.domain.review import Review
from command_service.ports import IdempotencyRecord, Outcome, StorageUnavailable

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "catalog_outbox"

_PRODUCT_COLUMNS = (
    "id, name, description, category, price, stock, status, version, created_at, updated_at"
)


def _product(row: asyncpg.Record) -> Product:
    return Product(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        category=row["category"],
        price=row["price"],
        stock=row["stock"],
        status=row["status"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own rollback of an open
    transaction: nothing. The service sets no session state (its advisory locks are
    transaction-scoped, it never listens, declares no cursor outside a transaction), so
    asyncpg's default reset statement (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`) would be one more round trip per command for nothing."""


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """A connection pool whose json/jsonb columns go through orjson."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            reset=keep_session,
            command_timeout=30,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


class ProductRepository:
    """Loads products under a row lock and writes them back."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get_for_update(self, product_id: UUID) -> Product | None:
        """The product, locked until the transaction ends, so its changes serialize."""
        row = await self._conn.fetchrow(
            f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE id = $1 FOR UPDATE", product_id
        )
        return _product(row) if row else None

    async def add(self, product: Product) -> None:
        await self._conn.execute(
            f"INSERT INTO products ({_PRODUCT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            product.id,
            product.name,
            product.description,
            product.category,
            product.price,
            product.stock,
            product.status,
            product.version,
            product.created_at,
            product.updated_at,
        )

    async def update(self, product: Product) -> None:
        status = await self._conn.execute(
            """
            UPDATE products
               SET name = $2, description = $3, category = $4, price = $5, stock = $6,
                   status = $7, version = $8, updated_at = $9
             WHERE id = $1 AND version = $8 - 1
            """,
            product.id,
            product.name,
            product.description,
            product.category,
            product.price,
            product.stock,
            product.status,
            product.version,
            product.updated_at,
        )
        if status != "UPDATE 1":
            # The row lock makes this unreachable unless someone bypasses the repository.
            raise RuntimeError(f"product {product.id} changed underneath its row lock")


_REVIEW_COLUMNS = (
    "id, product_id, rating, title, body, author, status, version, created_at, updated_at"
)


def _review(row: asyncpg.Record) -> Review:
    return Review(
        id=row["id"],
        product_id=row["product_id"],
        rating=row["rating"],
        title=row["title"],
        body=row["body"],
        author=row["author"],
        status=row["status"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ReviewRepository:
    """Loads reviews under a row lock and writes them back."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get_for_update(self, review_id: UUID) -> Review | None:
        row = await self._conn.fetchrow(
            f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE id = $1 FOR UPDATE", review_id
        )
        return _review(row) if row else None

    async def published_by(self, product_id: UUID, author: str) -> Review | None:
        row = await self._conn.fetchrow(
            f"""
            SELECT {_REVIEW_COLUMNS} FROM reviews
             WHERE product_id = $1 AND author = $2 AND status = 'published'
            """,
            product_id,
            author,
        )
        return _review(row) if row else None

    async def add(self, review: Review) -> None:
        await self._conn.execute(
            f"INSERT INTO reviews ({_REVIEW_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            review.id,
            review.product_id,
            review.rating,
            review.title,
            review.body,
            review.author,
            review.status,
            review.version,
            review.created_at,
            review.updated_at,
        )

    async def update(self, review: Review) -> None:
        status = await self._conn.execute(
            """
            UPDATE reviews SET status = $2, version = $3, updated_at = $4
             WHERE id = $1 AND version = $3 - 1
            """,
            review.id,
            review.status,
            review.version,
            review.updated_at,
        )
        if status != "UPDATE 1":
            raise RuntimeError(f"review {review.id} changed underneath its row lock")


class OutboxWriter:
    """Appends events to the outbox in the caller's transaction and wakes the relay on commit."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._appended = False

    async def append(self, event: CatalogEvent, *, traceparent: str | None = None) -> None:
        headers = {name: value.decode() for name, value in event_headers(event, traceparent)}
        await self._conn.execute(
            """
            INSERT INTO outbox (aggregate_type, aggregate_id, aggregate_version, message_key,
                                event_type, payload, headers)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            event.aggregate_type,
            event.aggregate_id,
            event.aggregate_version,
            message_key(event),
            event.event_type,
            event_to_document(event),
            headers,
        )
        if not self._appended:
            # Delivered only if and when the transaction commits.
            await self._conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
            self._appended = True


class IdempotencyStore:
    """First outcomes of idempotent requests, written in the command's transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def try_lock(self, caller: str, key: str) -> bool:
        """Claim the key for this transaction; False when another request holds it."""
        # The caller's length first keeps ("ab", "c") and ("a", "bc") apart; text cannot hold
        # a NUL separator.
        locked: bool = await self._conn.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(length($1) || ':' || $1 || $2, 0))",
            caller,
            key,
        )
        return locked

    async def find(self, caller: str, key: str) -> IdempotencyRecord | None:
        row = await self._conn.fetchrow(
            """
            SELECT request_hash, outcome FROM idempotency_keys
             WHERE caller = $1 AND key = $2 AND expires_at > now()
            """,
            caller,
            key,
        )
        if row is None:
            return None
        return IdempotencyRecord(row["request_hash"], Outcome.from_document(row["outcome"]))

    async def save(
        self, caller: str, key: str, record: IdempotencyRecord, *, ttl: timedelta
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO idempotency_keys (caller, key, request_hash, outcome, expires_at)
            VALUES ($1, $2, $3, $4, now() + $5::interval)
            ON CONFLICT (caller, key) DO UPDATE SET
                request_hash = EXCLUDED.request_hash,
                outcome = EXCLUDED.outcome,
                created_at = now(),
                expires_at = EXCLUDED.expires_at
            """,
            caller,
            key,
            record.request_hash,
            record.outcome.to_document(),
            ttl,
        )


class UnitOfWork:
    """One transaction: commits when the block ends normally, rolls back on any exception."""

    products: ProductRepository
    reviews: ReviewRepository
    outbox: OutboxWriter
    idempotency: IdempotencyStore

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._tx: Any = None

    async def __aenter__(self) -> Self:
        try:
            self._conn = await self._pool.acquire()
            self._tx = self._conn.transaction()
            await self._tx.start()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._release()
            raise StorageUnavailable(f"cannot start a transaction: {exc}") from exc
        self.products = ProductRepository(self._conn)
        self.reviews = ReviewRepository(self._conn)
        self.outbox = OutboxWriter(self._conn)
        self.idempotency = IdempotencyStore(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                try:
                    await self._tx.commit()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                    raise StorageUnavailable(f"commit failed: {err}") from err
            else:
                try:
                    await self._tx.rollback()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.warning("rollback failed; the connection is discarded", exc_info=True)
        finally:
            await self._release()
        if isinstance(exc, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            raise StorageUnavailable(str(exc)) from exc

    async def _release(self) -> None:
        if self._conn is not None:
            try:
                await self._pool.release(self._conn)
            finally:
                self._conn = None


class UnitOfWorkFactory:
    """Builds units of work on one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.pool)

    async def ping(self) -> None:
        async with connection(self.pool) as conn:
            await conn.fetchval("SELECT 1")


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection with driver errors wrapped."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageUnavailable(str(exc)) from exc
