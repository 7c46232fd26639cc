"""Database engines, sessions and migrations (Alembic, run programmatically)."""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from scheduler.resources import migrations_dir


def make_engine(url: str, *, pool_size: int = 16, echo: bool = False) -> AsyncEngine:
    """An engine whose errors never carry a statement's parameters (names, addresses, birth
    dates), should one reach a log."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        _sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=0,  # a fixed pool: no connect/close churn (and re-preparing) under load
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={"server_settings": {"lock_timeout": "3s", "application_name": "scheduler"}},
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["database_url"] = url
    return cfg


def migrate_sync(url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision``; safe when several processes start at once
    (PostgreSQL: an advisory lock in env.py; SQLite: a lock file beside the database)."""
    path = _sqlite_file(url)
    if path is None:
        command.upgrade(alembic_config(url), revision)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(alembic_config(url), revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


async def migrate(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate_sync, url, revision)
