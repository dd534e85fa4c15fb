"""`catalogctl`: compare the read models with the write model, and repair what differs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg
from pymongo import AsyncMongoClient

from catalogctl.compare import compare
from catalogctl.reconcile import repair


async def reconcile(database_url: str, mongodb_url: str, database: str, fix: bool) -> int:
    """Compare every read model with the write model; with `fix`, repair what differs."""
    conn = await asyncpg.connect(database_url)
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    try:
        db = client[database]
        result = await compare(conn, db, progress=lambda line: print(line, flush=True))
        for comparison in result.comparisons:
            for key in comparison.missing[:20]:
                print(f"  {comparison.read_model} {key}: missing")
            for key, fields in list(comparison.different.items())[:20]:
                print(f"  {comparison.read_model} {key}: {fields}")
            for key in comparison.extra[:20]:
                print(f"  {comparison.read_model} {key}: not in the write model")
        if result.consistent:
            print("read models are consistent with the write model")
            return 0
        if not fix:
            print("run with --repair to re-project what differs")
            return 1
        await repair(result, db, progress=lambda line: print(line, flush=True))
        again = await compare(conn, db)
        print(f"after repair: {again.summary()}")
        return 0 if again.consistent else 1
    finally:
        await conn.close()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="catalogctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="compare PostgreSQL with the read models")
    rec.add_argument("--repair", action="store_true", help="re-project what differs")
    rec.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    rec.add_argument("--mongodb-url", default=os.environ.get("MONGODB_URL"))
    rec.add_argument("--mongodb-database", default=os.environ.get("MONGODB_DATABASE", "catalog"))
    args = parser.parse_args(argv)
    if not args.database_url or not args.mongodb_url:
        parser.error("DATABASE_URL and MONGODB_URL are needed (e.g. `. .run/stack.env`)")
    sys.exit(
        asyncio.run(
            reconcile(args.database_url, args.mongodb_url, args.mongodb_database, args.repair)
        )
    )


if __name__ == "__main__":
    main()
