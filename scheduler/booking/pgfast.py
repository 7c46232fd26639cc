"""The PostgreSQL fast path of a booking's confirmation: one statement, one round trip.

The conditional seat update, the booking, its appointment, its slot rows, the person claims,
the audit event, the outbox rows and (when given) the idempotency record are written by one
statement of
data-modifying CTEs. The statement ends by dividing by zero unless every wanted cell was
updated, so a full cell aborts it and nothing is written (a statement is atomic). The generic
SQLAlchemy path in ``bookings`` does the same in several statements; both keep the CHECK
constraint ``booked <= capacity`` as the last guard.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.booking.errors import SlotFull
from scheduler.booking.holds import CellRef
from scheduler.booking.idempotency import IdempotencyKey

BOOKING_COLUMNS = (
    "id", "reference", "status", "channel", "location_id", "starts_at", "ends_at", "created_at",
    "updated_at", "created_by", "attendee_name", "attendee_birth_date", "attendee_postcode",
    "contact_name", "contact_email", "contact_phone", "person_keys", "name_key", "language",
    "consent", "token_version", "sequence", "hold_key",
)  # fmt: skip
_FIRST = 6  # $6 is the booking id; $1..$5 are the cells and their count


class UniqueViolation(Exception):
    """A unique constraint refused the booking; ``str()`` names the constraint."""


def _statement(*, guarded: bool, with_key: bool) -> str:
    n = len(BOOKING_COLUMNS)
    values = ", ".join(
        f"${_FIRST + i}::json" if c == "person_keys" else f"${_FIRST + i}"
        for i, c in enumerate(BOOKING_COLUMNS)
    )
    p = _FIRST + n  # next free parameter
    guard = "AND s.booked + w.seats <= s.capacity" if guarded else ""
    idem = (
        f""", ir AS (
  INSERT INTO idempotency_records (key, request_hash, status_code, body, created_at)
  VALUES (${p + 11}, ${p + 12}, 201, ${p + 13}, $13)
)"""
        if with_key
        else ""
    )
    return f"""
WITH want AS (
  SELECT * FROM unnest($1::text[], $2::date[], $3::int[], $4::int[])
    AS w(calendar_id, day, cell, seats)
), taken AS (
  UPDATE slots AS s SET booked = s.booked + w.seats FROM want AS w
  WHERE s.calendar_id = w.calendar_id AND s.day = w.day AND s.cell = w.cell {guard}
  RETURNING s.id, w.seats
), b AS (
  INSERT INTO bookings ({", ".join(BOOKING_COLUMNS)}) VALUES ({values}) RETURNING id
), a AS (
  INSERT INTO appointments (booking_id, position, service_ids, starts_at, ends_at, calendar_ids)
  SELECT id, 0, ${p}::json, $11, $12, ${p + 1}::json FROM b
), bs AS (
  INSERT INTO booking_slots (booking_id, slot_id, seats) SELECT $6, id, seats FROM taken
), pc AS (
  INSERT INTO person_claims (service_id, person_key, n, booking_id)
  SELECT c.s, c.k, 1, $6 FROM unnest(${p + 2}::text[], ${p + 3}::text[]) AS c(s, k)
), au AS (
  INSERT INTO audit_events (at, actor, action, booking_id, request_id, details)
  VALUES ($13, ${p + 4}, ${p + 5}, $6, ${p + 6}, ${p + 7}::json)
), nt AS (
  INSERT INTO notifications
    (booking_id, kind, due_at, status, attempts, message_id, created_at)
  SELECT $6, n.k, n.d, 'pending', 0, n.i, $13
  FROM unnest(${p + 8}::text[], ${p + 9}::timestamptz[], ${p + 10}::text[]) AS n(k, d, i)
){idem}
SELECT 1 / (CASE WHEN (SELECT count(*) FROM taken) = $5 THEN 1 ELSE 0 END)
"""


_STATEMENTS = {
    (guarded, with_key): _statement(guarded=guarded, with_key=with_key)
    for guarded in (True, False)
    for with_key in (True, False)
}


async def insert_booking(
    engine: AsyncEngine,
    booking: dict[str, Any],
    appointment: dict[str, Any],
    audit: dict[str, Any],
    cells: list[CellRef],
    claims: list[tuple[str, str]],
    messages: list[dict[str, Any]],
    idempotency: tuple[IdempotencyKey, bytes, datetime] | None,
    *,
    guarded: bool = True,
) -> None:
    """Write a confirmed booking in one statement. Raises SlotFull when a cell lacks seats and
    UniqueViolation when a unique constraint (person limit, idempotency key, hold) refuses."""
    merged: dict[tuple[str, date, int], int] = defaultdict(int)
    for c in cells:
        merged[(c.calendar_id, c.day, c.cell)] += c.seats
    keys = sorted(merged)
    args: list[Any] = [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [merged[k] for k in keys],
        len(keys),
    ]
    for column in BOOKING_COLUMNS:
        value = booking[column]
        args.append(json.dumps(value) if column == "person_keys" else value)
    args += [
        json.dumps(appointment["service_ids"]),
        json.dumps(appointment["calendar_ids"]),
        [c[0] for c in claims],
        [c[1] for c in claims],
        audit["actor"],
        audit["action"],
        audit["request_id"],
        json.dumps(audit["details"]),
        [row["kind"] for row in messages],
        [row["due_at"] for row in messages],
        [row["message_id"] for row in messages],
    ]
    if idempotency is not None:
        key, body, _ = idempotency
        args += [key.key, key.request_hash, body]
    statement = _STATEMENTS[(guarded, idempotency is not None)]
    for attempt in range(3):
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            pg: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
            try:
                await pg.fetchval(statement, *args)
                return
            except (asyncpg.DivisionByZeroError, asyncpg.CheckViolationError):
                raise SlotFull() from None
            except asyncpg.UniqueViolationError as exc:
                raise UniqueViolation(exc.constraint_name or str(exc)) from None
            except (
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                ConnectionError,
            ):
                # the connection broke under the statement (terminated, server restarted):
                # it must not go back to the pool; the caller answers 503 (nothing committed,
                # unless the break came with the commit)
                await conn.invalidate()
                raise
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise SlotFull() from None
