"""Alembic: an empty SQLite file and an empty PostgreSQL database (one of its own, created and
dropped here, so the shared test database is left alone) upgrade to head, match the models,
upgrade again as a no-op, enforce the seat invariant with a CHECK constraint, and refuse UPDATE
and DELETE on the audit events (a trigger that a downgrade drops)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking import models as m
from scheduler.booking.db import alembic_config, make_engine, make_sessionmaker, migrate
from tests.conftest import BACKENDS, PG_URL

# of its own, per test run (several runs may share the server)
MIGRATIONS_DB = f"scheduler_migrations_test_{os.getpid()}"


async def _admin(statement: str) -> None:
    assert PG_URL is not None
    engine = create_async_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    assert PG_URL is not None
    await _admin(f"DROP DATABASE IF EXISTS {MIGRATIONS_DB} WITH (FORCE)")
    await _admin(f"CREATE DATABASE {MIGRATIONS_DB}")
    try:
        yield make_url(PG_URL).set(database=MIGRATIONS_DB).render_as_string(hide_password=False)
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {MIGRATIONS_DB} WITH (FORCE)")


def _schema(conn: Connection) -> dict[str, Any]:
    """Tables with their columns, indexes, unique and check constraints, as the database has
    them."""
    inspector = inspect(conn)
    out: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "indexes": sorted(str(sorted(i.items())) for i in inspector.get_indexes(table)),
            "unique": sorted(
                str(sorted(u.items())) for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(c["name"] or "" for c in inspector.get_check_constraints(table)),
        }
    return out


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, m.Base.metadata)


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def _run(engine: AsyncEngine, fn: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.run_sync(fn)


async def test_empty_database_upgrades_to_head_and_matches_the_models(empty_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert head is not None
    engine = create_async_engine(empty_url, poolclass=NullPool)
    try:
        assert await _run(engine, _schema) == {}
        await migrate(empty_url)
        assert await _run(engine, _revision) == head
        schema = await _run(engine, _schema)
        assert set(schema) == {t.name for t in m.Base.metadata.sorted_tables} | {"alembic_version"}
        assert "ck_slots_seats_within_capacity" in schema["slots"]["checks"]
        assert await _run(engine, _differences) == []

        # a second run is a no-op: same revision, same schema, data untouched
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO locations (id, name, address, timezone) "
                    "VALUES ('rathaus', 'Rathaus', 'Markt 1', 'Europe/Berlin')"
                )
            )
        await migrate(empty_url)
        assert await _run(engine, _revision) == head
        assert await _run(engine, _schema) == schema
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT id FROM locations"))).scalars().all() == [
                "rathaus"
            ]
    finally:
        await engine.dispose()


async def test_downgrade_to_base_and_up_again(empty_url: str) -> None:
    await migrate(empty_url)
    engine = create_async_engine(empty_url, poolclass=NullPool)
    try:
        schema = await _run(engine, _schema)
        await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "base")
        assert set(await _run(engine, _schema)) == {"alembic_version"}
        await migrate(empty_url)
        assert await _run(engine, _schema) == schema
    finally:
        await engine.dispose()


async def test_processes_migrating_at_once_do_not_collide(empty_url: str) -> None:
    """Several processes starting at once each migrate: one does the work, the others find the
    schema at head (PostgreSQL: an advisory lock; SQLite: a lock file)."""
    code = "import sys; from scheduler.booking.db import migrate_sync; migrate_sync(sys.argv[1])"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, empty_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()
    engine = create_async_engine(empty_url, poolclass=NullPool)
    try:
        assert await _run(engine, _differences) == []
    finally:
        await engine.dispose()


async def test_check_constraint_keeps_booked_within_capacity(empty_url: str) -> None:
    await migrate(empty_url)
    engine = make_engine(empty_url)
    sessions = make_sessionmaker(engine)
    start = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    try:
        async with sessions() as session, session.begin():
            session.add(
                m.Location(
                    id="rathaus", name="Rathaus", address="Markt 1", timezone="Europe/Berlin"
                )
            )
            await session.flush()
            session.add(
                m.Calendar(
                    id="sachbearbeitung-1",
                    location_id="rathaus",
                    name="SB 1",
                    kind="clerk",
                    slot_minutes=15,
                    capacity=2,
                    feed_privacy="initials",
                )
            )
            await session.flush()
            session.add(
                m.Slot(
                    calendar_id="sachbearbeitung-1",
                    starts_at=start,
                    ends_at=start.replace(minute=15),
                    day=date(2026, 11, 30),
                    cell=32,
                    capacity=2,
                    booked=0,
                    capacity_overridden=False,
                )
            )
        for statement in (
            "UPDATE slots SET booked = 3",
            "UPDATE slots SET booked = booked + 3",
            "UPDATE slots SET booked = -1",
            "UPDATE slots SET capacity = 1, booked = 2",
        ):
            with pytest.raises(IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
        # allowed: up to the capacity, and the conditional update of a confirm
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE slots SET booked = 2"))
            taken = await conn.execute(
                text("UPDATE slots SET booked = booked + 1 WHERE booked + 1 <= capacity")
            )
            assert taken.rowcount == 0
            assert (await conn.execute(text("SELECT booked FROM slots"))).scalar_one() == 2
        # a capacity below the booked seats is refused as well
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE slots SET capacity = 1"))
    finally:
        await engine.dispose()


AUDIT_APPEND_ONLY = "aed1ac978a22"  # the revision that adds the audit_events triggers


async def _audit_triggers(engine: AsyncEngine) -> list[str]:
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT tgname FROM pg_trigger "
            "WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal ORDER BY tgname"
        )
    else:
        query = (
            "SELECT name FROM sqlite_master "
            "WHERE type = 'trigger' AND tbl_name = 'audit_events' ORDER BY name"
        )
    async with engine.connect() as conn:
        return list((await conn.execute(text(query))).scalars())


async def _refused(engine: AsyncEngine, statement: str) -> bool:
    """True when the database refuses ``statement`` as a change of the append-only table."""
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    except IntegrityError as exc:
        return "append-only" in str(exc)
    return False


async def test_audit_events_are_append_only_and_a_downgrade_lifts_it(empty_url: str) -> None:
    """The database itself refuses UPDATE and DELETE on audit_events (a trigger); downgrading
    past the revision drops the trigger, upgrading brings it back."""
    script = ScriptDirectory.from_config(alembic_config(empty_url))
    before = script.get_revision(AUDIT_APPEND_ONLY).down_revision
    assert isinstance(before, str)
    await migrate(empty_url)
    engine = create_async_engine(empty_url, poolclass=NullPool)
    insert = (
        "INSERT INTO audit_events (at, actor, action, details) "
        "VALUES ('2026-11-23 06:00:00+00:00', 'system', 'test', '{}')"
    )
    try:
        assert await _audit_triggers(engine)
        async with engine.begin() as conn:
            await conn.execute(text(insert))
        assert await _refused(engine, "UPDATE audit_events SET action = 'forged'")
        assert await _refused(engine, "DELETE FROM audit_events")

        await asyncio.to_thread(command.downgrade, alembic_config(empty_url), before)
        assert await _audit_triggers(engine) == []
        assert not await _refused(engine, "UPDATE audit_events SET action = 'changed'")
        assert not await _refused(engine, "DELETE FROM audit_events")
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                functions = await conn.execute(
                    text("SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_append_only'")
                )
                assert functions.scalar_one() == 0

        await migrate(empty_url)
        async with engine.begin() as conn:
            await conn.execute(text(insert))
        assert await _refused(engine, "DELETE FROM audit_events")
        assert await _run(engine, _differences) == []
    finally:
        await engine.dispose()
