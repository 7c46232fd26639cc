"""Anti-trading limits: active online bookings per contact e-mail address and phone number.

A trader books many appointments of a much-demanded service under invented names with one
address, to sell them on. The per-person limit (``max_active_per_person``) does not see that:
it counts the attendee's own identifiers, and never the contact's, so a daughter can book for
both parents. This limit counts the **contact's** address and number instead (the attendee's
own when nobody else is named), across every service of a location:
``LocationInfo.max_active_per_email`` / ``max_active_per_phone`` (seed; default 6, 0 = none).

Who is limited: citizens booking online (no API key). An agent's phone booking or a counter
booking is not limited and not counted: a person talks to the caller (a care home phoning for
twenty residents from one number is normal), and the agent's key is in the audit trail.

How it is counted, race-safe on every database: as ``person_claims`` rows, like the
per-person limit. A booking takes for each contact key one free ordinal ``n`` of
``1..limit`` and inserts ``(service_id = "contact:<n>", person_key)`` in its transaction;
the primary key refuses a second booking with the same ordinal, so two processes that both
saw ordinal 4 free cannot both take it (the loser picks again or is refused). The ordinal
sits in ``service_id`` (``n`` stays 1) so the PostgreSQL one-statement path writes these rows
unchanged. The keys are keyed hashes (HMAC under the server secret) of the location and the
canonical address: lower case, without a ``+tag`` in the local part (``trader+17@…`` is
``trader@…``); the phone number in E.164.

A claim ends with its booking: cancelled or lapsed bookings give theirs back in their
transaction (as every person claim); one whose booking is over (ended, or no-show, completed)
is stale and is removed by the next booking that needs its ordinal (:func:`pick`).

A booking first takes ordinal 1 without reading (:func:`first_claims`): most contacts have no
other active booking, and a rush must not pay a read for the few that do; the primary key
refuses a taken ordinal, and the booking reads and picks then.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.catalog import LocationInfo
from scheduler.booking.errors import LimitReached

PREFIX = "contact:"
ACTIVE = tuple(s.value for s in m.ACTIVE_STATUSES)


@dataclass(frozen=True, slots=True)
class ContactKey:
    key: str  # the person_claims.person_key
    kind: str  # "email" or "phone"
    limit: int


def claim_service(n: int) -> str:
    """The ``person_claims.service_id`` of a contact claim's ordinal."""
    return f"{PREFIX}{n}"


def canonical_email(email: str) -> str:
    local, _, domain = codes.normalize_email(email).rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def contact_keys(
    secret: str, location: LocationInfo, email: str | None, phone: str | None
) -> list[ContactKey]:
    """The limited keys of a contact at a location (none for a limit of 0)."""
    keys = []
    if email and location.max_active_per_email > 0:
        value = f"ce:{location.id}:{canonical_email(email)}"
        keys.append(ContactKey(_hash(secret, value), "email", location.max_active_per_email))
    e164 = codes.normalize_phone(phone) if phone else None
    if e164 and location.max_active_per_phone > 0:
        value = f"cp:{location.id}:{e164}"
        keys.append(ContactKey(_hash(secret, value), "phone", location.max_active_per_phone))
    return keys


def first_claims(keys: list[ContactKey]) -> list[tuple[str, str]]:
    """The first ordinal of every key, unread: right for a contact without another active
    booking; the claim's primary key refuses it otherwise (then :func:`pick`)."""
    return [(claim_service(1), k.key) for k in keys]


async def pick(engine: AsyncEngine, keys: list[ContactKey], now: datetime) -> list[tuple[str, str]]:
    """A free ordinal per key: the ``(service_id, person_key)`` claims for the booking's
    transaction, or :class:`LimitReached` (``reason`` ``email``/``phone``, with the limit).

    Claims of bookings that are over are removed first (in a transaction of their own: any
    booking may remove a stale claim, and one that removed it finds it gone)."""
    if not keys:
        return []
    top = max(k.limit for k in keys)
    rows = list(
        await _read(engine, [k.key for k in keys], [claim_service(n) for n in range(1, top + 1)])
    )
    stale = [
        (service_id, person_key, booking_id)
        for service_id, person_key, booking_id, status, ends_at in rows
        if status not in ACTIVE or ends_at <= now
    ]
    if stale:
        async with engine.begin() as conn:
            await conn.execute(
                delete(m.PersonClaim).where(
                    or_(*(
                        and_(
                            m.PersonClaim.service_id == s,
                            m.PersonClaim.person_key == k,
                            m.PersonClaim.booking_id == b,
                        )
                        for s, k, b in stale
                    ))
                )
            )  # fmt: skip
    gone = {(s, k) for s, k, _ in stale}
    used = {(s, k) for s, k, *_ in rows} - gone
    claims = []
    for key in keys:
        free = next(
            (n for n in range(1, key.limit + 1) if (claim_service(n), key.key) not in used), None
        )
        if free is None:
            raise LimitReached(key.kind, key.limit)
        claims.append((claim_service(free), key.key))
    return claims


async def _read(
    engine: AsyncEngine, keys: list[str], services: list[str]
) -> list[tuple[str, str, str, str, datetime]]:
    """The contact claims of these keys, with their booking's status and end."""
    query = (
        select(
            m.PersonClaim.service_id,
            m.PersonClaim.person_key,
            m.PersonClaim.booking_id,
            m.Booking.status,
            m.Booking.ends_at,
        )
        .join(m.Booking, m.Booking.id == m.PersonClaim.booking_id)
        .where(m.PersonClaim.service_id.in_(services), m.PersonClaim.person_key.in_(keys))
    )
    async with engine.connect() as conn:
        return [(s, k, b, status, end) for s, k, b, status, end in await conn.execute(query)]
