"""API keys for agents, staff and admins.

A key looks like ``sk_agent_<43 url-safe characters>`` (256 random bits); only its SHA-256 is
stored, and the key is shown once, when it is created. A key has a role and, for staff, the
calendars it may see.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m
from scheduler.booking.codes import stored_digest
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key's id, role and calendars in scope."""

    key_id: str
    role: m.Role
    name: str
    calendar_ids: frozenset[str]

    def may_see_calendar(self, calendar_id: str) -> bool:
        return (
            self.role is m.Role.ADMIN
            or calendar_id in self.calendar_ids
            or (self.role is m.Role.AGENT)
        )


def role_of_key(secret: str) -> m.Role | None:
    for role in m.Role:
        if secret.startswith(f"sk_{role.value}_"):
            return role
    return None


async def create_key(
    session: AsyncSession,
    *,
    role: str,
    name: str,
    calendar_ids: list[str],
    known_calendars: set[str],
    now: datetime,
) -> tuple[m.ApiKey, str]:
    """Create a key; returns the row and the secret (shown once). Caller commits."""
    errors = []
    try:
        parsed = m.Role(role)
    except ValueError:
        errors.append(FieldError("role", "one_of", choices="agent, staff, admin"))
        parsed = m.Role.AGENT
    name = name.strip()
    if not 1 <= len(name) <= 200:
        errors.append(FieldError("name", "length", min=1, max=200))
    unknown = [c for c in calendar_ids if c not in known_calendars]
    if unknown:
        errors.append(FieldError("calendar_ids", "unknown_calendar", ident=", ".join(unknown)))
    if parsed is m.Role.STAFF and not calendar_ids:
        errors.append(FieldError("calendar_ids", "staff_needs_calendar"))
    if errors:
        raise ValidationFailed(*errors)
    secret = f"sk_{parsed.value}_{secrets.token_urlsafe(32)}"
    row = m.ApiKey(
        id=secrets.token_hex(6),
        name=name,
        role=parsed.value,
        key_hash=stored_digest(secret),
        calendar_ids=sorted(set(calendar_ids)),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row, secret


async def list_keys(session: AsyncSession) -> list[m.ApiKey]:
    return list(await session.scalars(select(m.ApiKey).order_by(m.ApiKey.created_at)))


async def revoke_key(session: AsyncSession, key_id: str, now: datetime) -> m.ApiKey:
    row = await session.get(m.ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise NotFound("api_key", key_id)
    row.revoked_at = now
    await session.flush()
    return row


async def principal_for(session: AsyncSession, secret: str) -> Principal | None:
    """The principal of a presented key, or None for an unknown or revoked one."""
    if role_of_key(secret) is None or len(secret) > 200:
        return None
    row = await session.scalar(select(m.ApiKey).where(m.ApiKey.key_hash == stored_digest(secret)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, m.Role(row.role), row.name, frozenset(row.calendar_ids))
