"""The single-model baseline: lists, category figures and the product page from the write model.

What a service without CQRS would run: the same HTTP stack as the query service (FastAPI,
uvicorn with uvloop and httptools, orjson bodies), but each request queries PostgreSQL's
`products` and `reviews` tables with their own indexes, under the command side's write load.
Its writes are benchmarks/single_model_writes.py: the command service's own app, no outbox.

    python -m benchmarks.single_model_app --dsn DSN --port PORT
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
import orjson
from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from benchmarks.page_data import PAGE_SQL, page_body
from service_runtime.serving import serve

POOL_SIZE = 20  # the command service's pool_max_size

LIST = """
    SELECT id::text, name, price::text, stock > 0 AS in_stock, category
      FROM products
     WHERE status = 'active' AND category = $1 AND ($2::boolean IS NULL OR (stock > 0) = $2)
     ORDER BY price, id
     LIMIT $3
"""
CATEGORIES = """
    SELECT category, count(*) AS product_count, count(*) FILTER (WHERE stock > 0) AS in_stock,
           sum(stock) AS total_stock, min(price)::text AS min_price, max(price)::text AS max_price
      FROM products WHERE status = 'active'
     GROUP BY category ORDER BY category
"""


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/products")
    async def list_products(
        request: Request,
        category: str,
        in_stock: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        rows = await request.app.state.pool.fetch(LIST, category, in_stock, limit + 1)
        items = [
            {
                "id": r["id"],
                "name": r["name"],
                "price": r["price"],
                "in_stock": r["in_stock"],
                "category": r["category"],
            }
            for r in rows[:limit]
        ]
        cursor = rows[limit]["id"] if len(rows) > limit else None
        return Response(
            orjson.dumps({"items": items, "next_cursor": cursor}), media_type="application/json"
        )

    @app.get("/api/v1/categories")
    async def categories(request: Request) -> Response:
        rows = await request.app.state.pool.fetch(CATEGORIES)
        body = [
            {
                "category": r["category"],
                "product_count": r["product_count"],
                "in_stock_count": r["in_stock"],
                "total_stock": r["total_stock"],
                "min_price": r["min_price"],
                "max_price": r["max_price"],
            }
            for r in rows
        ]
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/api/v1/products/{product_id}")
    async def product_page(request: Request, product_id: str) -> Response:
        try:
            key = uuid.UUID(product_id)
        except ValueError:
            return Response(status_code=404)
        row = await request.app.state.pool.fetchrow(PAGE_SQL, key)
        if row is None:
            return Response(status_code=404)
        return Response(orjson.dumps(page_body(row)), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(create_app(args.dsn), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
