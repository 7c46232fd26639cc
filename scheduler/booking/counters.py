"""Seat counters in Redis: the fast, rebuildable mirror of SQL that the reservation gate uses.

Per calendar and local day one string holds the free seats of every grid cell as big-endian
unsigned 16-bit integers (cell ``i`` at bit offset ``16 * i``, as ``BITFIELD u16 #i`` sees it):
``free = capacity - confirmed seats - live holds``. A closed cell is 0. Keys of one location
share the hash tag ``{location}`` so every script runs unchanged on Redis Cluster::

    sch:{rathaus}:ver                     version, bumped by every write; missing = not built yet
    sch:{rathaus}:ep                      reconcile epoch
    sch:{rathaus}:hx                      zset: hold token -> expiry (ms)
    sch:{rathaus}:h:<token>               hash: st (held|claimed|confirmed), exp, ce, cells, p
    sch:{rathaus}:f:<calendar>:<yyyymmdd> free seats per cell
    sch:{rathaus}:fv:<calendar>           feed version: bumped when a booking of it changes
    sch:changes                           pub/sub channel: a location's counters changed

A hold's ``cells`` field lists ``calendar|yyyymmdd|cell|seats`` entries joined by ``;``.
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
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
    def hold_index(self) -> str:
        return self.base + "hx"

    def hold(self, token: str) -> str:
        return f"{self.base}h:{token}"

    def day(self, calendar_id: str, day: date) -> str:
        return f"{self.base}f:{calendar_id}:{day:%Y%m%d}"

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
-- KEYS[1] version, KEYS[2] hold index, KEYS[3..] day keys
-- ARGV[1] epoch, ARGV[2] now (ms), ARGV[3] location id, then per day key: data, ttl (ms)
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
  local h = redis.call('HMGET', hkey, 'st', 'exp', 'ce', 'cells')
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
  end
end
redis.call('INCR', KEYS[1])
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
    """Free seats per cell from SQL (capacity - booked), per calendar and local day."""
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
