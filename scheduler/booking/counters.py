"""Seat counters in Redis: the fast, rebuildable mirror of SQL that the reservation gate uses.

Per calendar and local day one string holds the free seats of every grid cell as big-endian
unsigned 16-bit integers (cell ``i`` at bit offset ``16 * i``, as ``BITFIELD u16 #i`` sees it):
``free = capacity - confirmed seats - live holds``. A closed cell is 0. Keys of one location
share the hash tag ``{location}`` so every script runs unchanged on Redis Cluster::

    sch:{rathaus}:ver                     version, bumped by every write; missing = not built yet
    sch:{rathaus}:ep                      reconcile epoch
    sch:{rathaus}:hx                      zset: hold token -> expiry (ms)
    sch:{rathaus}:h:<token>               hash: st (held|claimed|confirmed), exp, ce, cells, p, o
    sch:{rathaus}:f:<calendar>:<yyyymmdd> free seats per cell
    sch:{rathaus}:o:<calendar>:<yyyymmdd> online seat-cells left (days under a phone contingent)
    sch:{rathaus}:fv:<calendar>           feed version: bumped when a booking of it changes
    sch:changes                           pub/sub channel: a location's counters changed

A hold's ``cells`` field lists ``calendar|yyyymmdd|cell|seats`` entries joined by ``;``.

**Phone contingents.** A calendar may keep a share of each day's seats for the phone channel
until some days before the day (``CalendarInfo.reserved_share``). While a day is under such a
reserve, its integer ``o`` key counts what online booking may still take, in seat-cells (a
30-minute booking of one seat on 10-minute cells takes 3)::

    floor(sum of the day's slot capacities * (100 - share) / 100)
      - seat-cells of active online bookings (SQL) - seat-cells of live online holds

A released day, or a calendar without a contingent, has no ``o`` key and no limit. The Python
side decides from the catalog and the clock which cells of an online hold count against a
budget, so the scripts need no configuration: HOLD takes seats and budget together (a missing
key counts as 0 left) and records the budget it took in the hold's ``o`` field
(``calendar|yyyymmdd|seat-cells`` entries joined by ``;``); releasing or expiring the hold gives
it back, confirming keeps it taken, and FREE gives back what a cancelled or moved online booking
took. Budgets are only ever changed where their key exists, so none is left without a TTL.
A change the scripts cannot see, e.g. an agent moving an online booking (the new seats were held
on the phone channel, the old ones are given back to online), leaves a budget off by that
booking until the periodic reconcile (every minute) rebuilds it from SQL.
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m

PREFIX = "sch"
_SWAP = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key of one location (one hash tag)."""

    location_id: str

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.location_id}}}:"

    @property
    def version(self) -> str:
        return self.base + "ver"

    @property
    def epoch(self) -> str:
        return self.base + "ep"

    @property
    def built(self) -> str:
        """For which Redis run and catalog version the counters were last rebuilt."""
        return self.base + "built"

    @property
    def hold_index(self) -> str:
        return self.base + "hx"

    def hold(self, token: str) -> str:
        return f"{self.base}h:{token}"

    def day(self, calendar_id: str, day: date) -> str:
        return f"{self.base}f:{calendar_id}:{day:%Y%m%d}"

    def online(self, calendar_id: str, day: date) -> str:
        return f"{self.base}o:{calendar_id}:{day:%Y%m%d}"

    def feed(self, calendar_id: str) -> str:
        return f"{self.base}fv:{calendar_id}"


def decode_free(raw: bytes | None) -> array[int]:
    """A counter string as an array of free seats per cell (empty for a missing key)."""
    values = array("H")
    if raw:
        values.frombytes(raw[: len(raw) - len(raw) % 2])
        if _SWAP:
            values.byteswap()
    return values


def encode_free(values: Sequence[int]) -> bytes:
    packed = array("H", values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


RECONCILE = """
-- KEYS[1] version, KEYS[2] hold index, KEYS[3..] day keys and online budget keys
-- ARGV[1] epoch, ARGV[2] now (ms), ARGV[3] location id, then per key of KEYS[3..]: data
-- (a counter string, or a budget; '' deletes the key), ttl (ms); last ARGV a random number
local epoch = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local base = string.sub(KEYS[1], 1, -4)
local rebuilt = {}
for i = 3, #KEYS do
  local data = ARGV[2 * (i - 2) + 2]
  local ttl = ARGV[2 * (i - 2) + 3]
  if data == '' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], data, 'PX', ttl)
  end
  rebuilt[KEYS[i]] = true
end
local holds = redis.call('ZRANGE', KEYS[2], 0, -1)
local kept = 0
for _, token in ipairs(holds) do
  local hkey = base .. 'h:' .. token
  local h = redis.call('HMGET', hkey, 'st', 'exp', 'ce', 'cells', 'o')
  if not h[1] then
    redis.call('ZREM', KEYS[2], token)
  elseif (h[1] == 'held' or h[1] == 'claimed') and tonumber(h[2]) <= now then
    redis.call('DEL', hkey)
    redis.call('ZREM', KEYS[2], token)
  elseif h[1] == 'held' or h[1] == 'claimed' or tonumber(h[3] or '0') >= epoch then
    kept = kept + 1
    for cal, day, cell, seats in string.gmatch(h[4], '([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)') do
      local key = base .. 'f:' .. cal .. ':' .. day
      -- a day without free seats has no key: BITFIELD would create one that never expires
      if rebuilt[key] and redis.call('EXISTS', key) == 1 then
        redis.call('BITFIELD', key, 'OVERFLOW', 'SAT',
          'INCRBY', 'u16', '#' .. cell, -tonumber(seats))
      end
    end
    for cal, day, n in string.gmatch(h[5] or '', '([^|;]+)|([^|;]+)|([^|;]+)') do
      local key = base .. 'o:' .. cal .. ':' .. day
      if rebuilt[key] and redis.call('EXISTS', key) == 1 then
        redis.call('DECRBY', key, tonumber(n))
      end
    end
  end
end
-- The version names the counters' contents (answers are cached under it), so it must never
-- come back with other contents: after a restart (the key is gone) it starts at a random
-- number, not at 1; after a failover that lost writes (the promoted replica's version is
-- behind) it moves on by a random step, not to a value a process may have seen already.
local random = tonumber(ARGV[#ARGV])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], random)
else
  redis.call('INCRBY', KEYS[1], 1 + random % 1048576)
end
redis.call('PUBLISH', 'sch:changes', ARGV[3])
return kept
"""


@dataclass(frozen=True, slots=True)
class DayCells:
    calendar_id: str
    day: date
    free: bytes


async def sql_free_cells(
    session: AsyncSession,
    calendar_ids: Iterable[str],
    first_day: date,
    last_day: date,
) -> dict[tuple[str, date], list[int]]:
    """Free seats per cell from SQL (capacity - booked), per calendar and local day.

    Seats held back after a cancellation (a service's release delay, ``seat_holdbacks``) are
    still counted in ``booked`` until the release job gives them back, so a rebuild never
    offers them early."""
    ids = list(calendar_ids)
    out: dict[tuple[str, date], list[int]] = defaultdict(list)
    if not ids:
        return out
    query = (
        select(m.Slot.calendar_id, m.Slot.day, m.Slot.cell, m.Slot.capacity, m.Slot.booked)
        .where(m.Slot.calendar_id.in_(ids), m.Slot.day >= first_day, m.Slot.day <= last_day)
        .order_by(m.Slot.calendar_id, m.Slot.day, m.Slot.cell)
    )
    for calendar_id, day, cell, capacity, booked in await session.execute(query):
        cells = out[(calendar_id, day)]
        if len(cells) <= cell:
            cells.extend([0] * (cell + 1 - len(cells)))
        cells[cell] = max(capacity - booked, 0)
    return out


async def sql_online_budgets(
    session: AsyncSession, shares: Mapping[tuple[str, date], int]
) -> dict[tuple[str, date], int]:
    """Online seat-cells left per (calendar, local day) under a phone contingent (``shares``:
    the percentage kept for the phone), from SQL alone (live holds are Redis's part). May be
    negative: online already took more than its share (the share was raised, capacity cut)."""
    if not shares:
        return {}
    ids = sorted({c for c, _ in shares})
    first, last = min(d for _, d in shares), max(d for _, d in shares)
    in_range = (m.Slot.calendar_id.in_(ids), m.Slot.day >= first, m.Slot.day <= last)
    capacity_query = (
        select(m.Slot.calendar_id, m.Slot.day, func.sum(m.Slot.capacity))
        .where(*in_range)
        .group_by(m.Slot.calendar_id, m.Slot.day)
    )
    used_query = (
        select(m.Slot.calendar_id, m.Slot.day, func.sum(m.BookingSlot.seats))
        .join(m.BookingSlot, m.BookingSlot.slot_id == m.Slot.id)
        .join(m.Booking, m.Booking.id == m.BookingSlot.booking_id)
        .where(
            *in_range,
            m.Booking.channel == m.Channel.ONLINE.value,
            m.Booking.status.in_([s.value for s in m.ACTIVE_STATUSES]),
        )
        .group_by(m.Slot.calendar_id, m.Slot.day)
    )
    capacity = {(c, d): int(n or 0) for c, d, n in await session.execute(capacity_query)}
    used = {(c, d): int(n or 0) for c, d, n in await session.execute(used_query)}
    return {
        key: capacity.get(key, 0) * (100 - share) // 100 - used.get(key, 0)
        for key, share in shares.items()
    }
