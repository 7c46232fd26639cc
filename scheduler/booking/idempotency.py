"""Idempotency-Key records: the first answer to a key is stored in the transaction that made
the change, so a retry replays it and nothing is done twice."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from scheduler.booking import models as m
from scheduler.booking.errors import IdempotencyKeyReused


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    key: str  # scoped: hash of caller + the client's key
    request_hash: str

    @classmethod
    def of(
        cls, caller: str, client_key: str, method: str, path: str, body: bytes
    ) -> IdempotencyKey:
        scoped = hashlib.sha256(f"{caller}\n{client_key}".encode()).hexdigest()
        request = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()
        return cls(scoped, request)


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: bytes


async def lookup(session: AsyncSession, key: IdempotencyKey) -> Replay | None:
    row = (
        await session.execute(
            select(
                m.IdempotencyRecord.request_hash,
                m.IdempotencyRecord.status_code,
                m.IdempotencyRecord.body,
            ).where(m.IdempotencyRecord.key == key.key)
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != key.request_hash:
        raise IdempotencyKeyReused()
    return Replay(row.status_code, row.body)


INSERT_RECORD = insert(m.IdempotencyRecord)


async def store(
    session: AsyncSession | AsyncConnection,
    key: IdempotencyKey,
    status_code: int,
    body: bytes,
    now: datetime,
) -> None:
    await session.execute(
        INSERT_RECORD,
        {
            "key": key.key,
            "request_hash": key.request_hash,
            "status_code": status_code,
            "body": body,
            "created_at": now,
        },
    )


async def expire(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(m.IdempotencyRecord).where(m.IdempotencyRecord.created_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def remember(
    sessions: Any, key: IdempotencyKey, status_code: int, body: bytes, now: datetime
) -> Replay | None:
    """Store the answer of a change that is not a booking's creation (a hold, a cancel, a move)
    after it happened. Returns the earlier answer if a concurrent twin stored one first."""
    try:
        async with sessions() as session, session.begin():
            await store(session, key, status_code, body, now)
    except IntegrityError:
        async with sessions() as session:
            return await lookup(session, key)
    return None
