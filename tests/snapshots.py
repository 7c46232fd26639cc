"""Database snapshots for the fixtures: an empty migrated database and the demo municipality
seeded with its slots are built once per test session and copied into each test's database.

Migrating (~0.25 s), seeding (~0.2 s) and materializing 120 days of slots (~0.7 s) for every
one of a thousand tests took most of the suite's time. The copy is what they would have built:
the same migrations, the same seed at the same "now", the same horizon.

* SQLite: a template file per state, copied with SQLite's backup API.
* PostgreSQL: the seeded tables are copied once into a schema of their own in the test run's
  database; a test's (truncated) database is filled from it, sequences moved past the ids.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking.db import migrate
from scheduler.booking.models import Base

TABLES = [t.name for t in Base.metadata.sorted_tables]  # parents first


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def copy_sqlite(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` (consistent whatever the source's journal)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


class SqliteTemplates:
    """Template files in ``folder``: the migrated empty database and seeded states by key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: set[str] = set()

    async def empty(self, target: Path) -> None:
        template = self.folder / "migrated.db"
        if "migrated" not in self.made:
            await migrate(f"sqlite+aiosqlite:///{template}")
            self.made.add("migrated")
        copy_sqlite(template, target)

    async def seeded(self, key: str, target: Path, build: Callable[[], Awaitable[None]]) -> None:
        """``target`` (an empty migrated database) holds the state ``build`` makes in it: built
        there the first time for ``key``, copied from the template after."""
        template = self.folder / f"seeded-{_digest(key)}.db"
        if key in self.made:
            copy_sqlite(template, target)
            return
        await build()
        copy_sqlite(target, template)
        self.made.add(key)


class PostgresSnapshots:
    """Seeded states of the test run's PostgreSQL database, each in a schema of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: set[str] = set()
        self._sequences: list[tuple[str, str, str]] | None = None  # table, column, sequence

    async def seeded(self, key: str, build: Callable[[], Awaitable[None]]) -> None:
        """The database (migrated, and empty: the ``db_url`` fixture truncated it) holds the
        state ``build`` makes: built the first time for ``key`` and copied into its schema,
        restored from there after."""
        schema = f"snap_{_digest(key)}"
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            if key not in self.made:
                await build()
                async with engine.begin() as conn:
                    await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    await conn.execute(text(f"CREATE SCHEMA {schema}"))
                    for table in TABLES:
                        await conn.execute(
                            text(f"CREATE TABLE {schema}.{table} AS TABLE public.{table}")
                        )
                self.made.add(key)
                return
            async with engine.begin() as conn:
                # the copy is consistent: no foreign-key or trigger checks row by row
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                for table in TABLES:
                    await conn.execute(
                        text(f"INSERT INTO public.{table} SELECT * FROM {schema}.{table}")
                    )
                if self._sequences is None:
                    rows = await conn.execute(
                        text(
                            "SELECT table_name, column_name,"
                            " pg_get_serial_sequence(quote_ident(table_name), column_name)"
                            " FROM information_schema.columns WHERE table_schema = 'public'"
                            " AND (column_default LIKE 'nextval%' OR is_identity = 'YES')"
                        )
                    )
                    self._sequences = [(t, c, s) for t, c, s in rows if s]
                for table, column, sequence in self._sequences:
                    await conn.execute(
                        text(
                            f"SELECT setval('{sequence}', COALESCE(MAX({column}), 0) + 1, false)"
                            f" FROM {table}"
                        )
                    )
        finally:
            await engine.dispose()


def seed_key(now: datetime, horizon_days: int) -> str:
    return f"demo@{now.isoformat()}+{horizon_days}d"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]
