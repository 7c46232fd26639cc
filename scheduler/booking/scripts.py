"""Lua scripts of the reservation gate (see ``counters`` for the key layout).

Every script checks everything before it writes anything (Redis does not roll a script back),
bumps the location's version and publishes the location on ``sch:changes`` when it changed
counters. Keys are built inside the scripts from the location's base key, always with the same
hash tag, so the scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

# Give back online budget (``calendar|yyyymmdd|seat-cells`` entries), only to budget keys that
# exist: a released day has none, and INCRBY must not create a key without a TTL.
_RETURN_BUDGET_FN = """
local function return_budget(base, used)
  for cal, day, n in string.gmatch(used or '', '([^|;]+)|([^|;]+)|([^|;]+)') do
    local key = base .. 'o:' .. cal .. ':' .. day
    if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, tonumber(n)) end
  end
end
"""

# Give a hold's seats back to the counters (its ``cells`` string), and the online budget it
# took (its ``o`` string, false when it took none).
_GIVE_BACK_FN = (
    _RETURN_BUDGET_FN
    + """
local function give_back(base, cells, used)
  for cal, day, cell, seats in string.gmatch(cells, '([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)') do
    redis.call('BITFIELD', base .. 'f:' .. cal .. ':' .. day,
      'OVERFLOW', 'SAT', 'INCRBY', 'u16', '#' .. cell, tonumber(seats))
  end
  return_budget(base, used)
end
"""
)

# Release up to ``limit`` expired holds; shared by HOLD and SWEEP. Returns how many it released.
_SWEEP_FN = (
    _GIVE_BACK_FN
    + """
local function sweep(base, hx, now, limit)
  local expired = redis.call('ZRANGEBYSCORE', hx, '-inf', now, 'LIMIT', 0, limit)
  local released = 0
  for _, token in ipairs(expired) do
    local hkey = base .. 'h:' .. token
    local h = redis.call('HMGET', hkey, 'st', 'cells', 'o')
    if h[1] == 'held' or h[1] == 'claimed' then
      give_back(base, h[2], h[3])
      released = released + 1
    end
    redis.call('DEL', hkey)
    redis.call('ZREM', hx, token)
  end
  return released
end
"""
)

# KEYS[1] version, KEYS[2] hold index
# ARGV: location, token, now ms, expires ms, sweep limit, payload, state (held|claimed),
#       group count,
#       then per group: option count, then per option: cell count, then per cell:
#       calendar, day (yyyymmdd), cell index, seats, budgeted (1: the seats also count against
#       the online budget of that calendar and day, a missing budget key being 0 left; else 0)
# An option fits when all its cells have the seats and its budgets the seat-cells (counting
# what earlier groups of this hold planned). Returns {1, chosen cells string} on success,
# {0, failing group (1-based)} when full, {-1} when the counters are not built (Redis
# restarted: rebuild first).
HOLD = (
    _SWEEP_FN
    + """
local base = string.sub(KEYS[1], 1, -4)
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local now = tonumber(ARGV[3])
local released = sweep(base, KEYS[2], now, tonumber(ARGV[5]))
local pos = 9
local planned = {}
local chosen = {}
local budgets = {}  -- online budget keys this hold takes from, in order: {key, entry prefix}
local taking = {}   -- budget key -> seat-cells planned
local groups = tonumber(ARGV[8])
for g = 1, groups do
  local options = tonumber(ARGV[pos]); pos = pos + 1
  local picked = nil
  for o = 1, options do
    local cells = tonumber(ARGV[pos]); pos = pos + 1
    local fits = true
    local these = {}
    local needs = {}  -- budget key -> {seat-cells, calendar, day} of this option
    for c = 1, cells do
      local cal, day, cell, seats = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], tonumber(ARGV[pos + 3])
      local budgeted = ARGV[pos + 4] == '1'
      pos = pos + 5
      if fits and budgeted then
        local okey = base .. 'o:' .. cal .. ':' .. day
        local need = needs[okey] or {0, cal, day}
        need[1] = need[1] + seats
        needs[okey] = need
      end
      if fits then
        local key = base .. 'f:' .. cal .. ':' .. day
        local id = key .. '#' .. cell
        local free = redis.call('BITFIELD_RO', key, 'GET', 'u16', '#' .. cell)[1]
        local already = planned[id] or 0
        if free - already < seats then
          fits = false
        else
          local entry = cal .. '|' .. day .. '|' .. cell .. '|' .. seats
          these[#these + 1] = {key, cell, seats, id, entry}
        end
      end
    end
    if fits and not picked then
      for okey, need in pairs(needs) do
        local left = tonumber(redis.call('GET', okey) or '0')
        if left - (taking[okey] or 0) < need[1] then fits = false end
      end
    end
    if fits and not picked then
      picked = these
      for _, t in ipairs(these) do planned[t[4]] = (planned[t[4]] or 0) + t[3] end
      for okey, need in pairs(needs) do
        if not taking[okey] then
          taking[okey] = 0
          budgets[#budgets + 1] = {okey, need[2] .. '|' .. need[3] .. '|'}
        end
        taking[okey] = taking[okey] + need[1]
      end
    end
  end
  if not picked then
    if released > 0 then
      redis.call('INCR', KEYS[1])
      redis.call('PUBLISH', 'sch:changes', ARGV[1])
    end
    return {0, g}
  end
  for _, t in ipairs(picked) do chosen[#chosen + 1] = t end
end
local parts = {}
for _, t in ipairs(chosen) do
  redis.call('BITFIELD', t[1], 'INCRBY', 'u16', '#' .. t[2], -t[3])
  parts[#parts + 1] = t[5]
end
local used = {}
for _, b in ipairs(budgets) do
  redis.call('DECRBY', b[1], taking[b[1]])
  used[#used + 1] = b[2] .. taking[b[1]]
end
local cells = table.concat(parts, ';')
local hkey = base .. 'h:' .. ARGV[2]
redis.call('HSET', hkey, 'st', ARGV[7], 'exp', ARGV[4], 'cells', cells, 'p', ARGV[6])
if #used > 0 then redis.call('HSET', hkey, 'o', table.concat(used, ';')) end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', 'sch:changes', ARGV[1])
return {1, cells}
"""
)

# Claim a live hold for confirming, exactly once. KEYS[1] version, KEYS[2] hold index;
# ARGV: location, token, now ms. Returns {1, cells, payload, expires ms} or {0}.
CLAIM = """
local base = string.sub(KEYS[1], 1, -4)
local hkey = base .. 'h:' .. ARGV[2]
local h = redis.call('HMGET', hkey, 'st', 'exp', 'cells', 'p')
if h[1] ~= 'held' or tonumber(h[2]) <= tonumber(ARGV[3]) then return {0} end
-- the claim is a lease: a process that dies before its commit leaves the seats to the sweep
local exp = math.min(tonumber(h[2]), tonumber(ARGV[4]))
redis.call('HSET', hkey, 'st', 'claimed', 'exp', exp)
redis.call('ZADD', KEYS[2], exp, ARGV[2])
return {1, h[3], h[4], tostring(exp)}
"""

# Release a hold in a given state: ``held`` (the holder gives it back) or ``claimed`` (its
# booking failed); the seats and the online budget it took come back. KEYS[1] version,
# KEYS[2] hold index; ARGV: location, token, state. Returns 1 when released, 0 when there was
# no such hold.
RELEASE = (
    _GIVE_BACK_FN
    + """
local base = string.sub(KEYS[1], 1, -4)
local hkey = base .. 'h:' .. ARGV[2]
local h = redis.call('HMGET', hkey, 'st', 'cells', 'o')
if h[1] ~= ARGV[3] then return 0 end
give_back(base, h[2], h[3])
redis.call('DEL', hkey)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', 'sch:changes', ARGV[1])
return 1
"""
)

# One series hold per person: the person's keys (``sp:<campaign>:<person key>``, in the
# location's hash tag) point to their newest series hold; a previous hold they pointed to is
# released if it is still only held (not being confirmed). KEYS[1] version, KEYS[2] hold index;
# ARGV: location, new token, ttl ms, person keys... Returns the holds released.
ONE_PER_PERSON = (
    _GIVE_BACK_FN
    + """
local base = string.sub(KEYS[1], 1, -4)
local released = 0
local seen = {}
for i = 4, #ARGV do
  local pkey = base .. 'sp:' .. ARGV[i]
  local old = redis.call('GET', pkey)
  redis.call('SET', pkey, ARGV[2], 'PX', ARGV[3])
  if old and old ~= ARGV[2] and not seen[old] then
    seen[old] = true
    local hkey = base .. 'h:' .. old
    local h = redis.call('HMGET', hkey, 'st', 'cells', 'o')
    if h[1] == 'held' then
      give_back(base, h[2], h[3])
      redis.call('DEL', hkey)
      redis.call('ZREM', KEYS[2], old)
      released = released + 1
    end
  end
end
if released > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', 'sch:changes', ARGV[1])
end
return released
"""
)

# Mark a hold confirmed: its seats (and the online budget it took) now belong to a booking in
# SQL, and the feed version of each of its calendars changes. The record stays until
# ``keep`` (ms) with the reconcile epoch, so a reconcile that read SQL before the booking was
# committed still counts it. KEYS[1] version, KEYS[2] hold index, KEYS[3] epoch;
# ARGV: location, token, keep-until ms. Returns 1, or 0 when the hold was not live.
CONFIRM = """
local base = string.sub(KEYS[1], 1, -4)
local hkey = base .. 'h:' .. ARGV[2]
if redis.call('HGET', hkey, 'st') ~= 'claimed' then return 0 end
local epoch = redis.call('GET', KEYS[3]) or '0'
redis.call('HSET', hkey, 'st', 'confirmed', 'ce', epoch)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
local touched = {}
for cal in string.gmatch(redis.call('HGET', hkey, 'cells'), '([^|;]+)|[^;]*') do
  if not touched[cal] then
    touched[cal] = true
    redis.call('INCR', base .. 'fv:' .. cal)
  end
end
return 1
"""

# Give seats back (a cancelled booking, or the old slots of a moved one), and, for an online
# booking, the online budget of those days; the calendars' feed versions change too (CONFIRM
# bumps them for new bookings).
# KEYS[1] version; ARGV: location, budget entries (``calendar|yyyymmdd|seat-cells;...``, or
# ''), then calendar, day, cell, seats per cell.
FREE = (
    _RETURN_BUDGET_FN
    + """
local base = string.sub(KEYS[1], 1, -4)
for i = 3, #ARGV, 4 do
  redis.call('INCR', base .. 'fv:' .. ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return_budget(base, ARGV[2])
for i = 3, #ARGV, 4 do
  redis.call('BITFIELD', base .. 'f:' .. ARGV[i] .. ':' .. ARGV[i + 1],
    'OVERFLOW', 'SAT', 'INCRBY', 'u16', '#' .. ARGV[i + 2], tonumber(ARGV[i + 3]))
end
redis.call('INCR', KEYS[1])
redis.call('PUBLISH', 'sch:changes', ARGV[1])
return 1
"""
)

# A booking changed without seats moving (e.g. attendance marked, personal data erased):
# KEYS[1] version; ARGV: calendar ids whose feed version changes.
TOUCH_FEEDS = """
local base = string.sub(KEYS[1], 1, -4)
for i = 1, #ARGV do redis.call('INCR', base .. 'fv:' .. ARGV[i]) end
return #ARGV
"""

# Periodic sweep. KEYS[1] version, KEYS[2] hold index; ARGV: location, now ms, limit.
SWEEP = (
    _SWEEP_FN
    + """
local base = string.sub(KEYS[1], 1, -4)
local released = sweep(base, KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
if released > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', 'sch:changes', ARGV[1])
end
return released
"""
)
