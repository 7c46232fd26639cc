"""Abuse limits on anonymous routes, counted in Redis so they hold across processes.

A limit is data: ``Limit(name, count, seconds)`` allows ``count`` attempts per subject in a
fixed window of ``seconds`` that starts with the subject's first attempt. Three limits guard the
routes anyone may call (``Limits``):

* ``holds_per_address``: holds (and one-step bookings, which hold first) per client address;
* ``holds_per_person``: the same per person, counted against every identifier the request
  carries (normalized e-mail, phone, name + birth date: the keyed hashes of
  ``codes.person_keys``), like the per-person booking limit;
* ``token_failures_per_address``: manage or feed token look-ups that failed (wrong token, no
  such booking) per client address. A blocked address cannot even try a token.

One key per limit and subject, ``rl:<limit>:<digest>``: a hash ``{n: count, t: window start
(ms)}``. The digest is an HMAC-SHA256 of the subject under the server secret, truncated to 128
bits, so no address or personal data sits in Redis and the digests cannot be reversed by
trying every IPv4 address. Each script call touches one key, so the keys need no hash tag on
Redis Cluster (and spread over its nodes). Windows are measured with the service's clock (so
tests and benches can move them); Redis expires idle keys by itself.

IPv6 clients count per /64 network (one household or server usually holds a whole /64); IPv4
clients per address.

When Redis is unreachable the limiter fails open: the request passes and a warning (naming the
limit, never the subject) is logged at most once a minute per process. Abuse limits must never
be the reason a citizen cannot book.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from redis.exceptions import RedisError

from scheduler.booking.errors import RateLimited
from scheduler.clock import Clock

log = logging.getLogger("scheduler.ratelimit")

PREFIX = "rl"
WARN_EVERY_SECONDS = 60.0

# KEYS[1] the counter: a hash {n = attempts, t = window start (ms)}
# ARGV[1] mode: 'check' (count the attempt if it is allowed), 'hit' (count it in any case),
#         'peek' (count nothing); ARGV[2] limit; ARGV[3] window (ms); ARGV[4] now (ms)
# Returns {1, 0} when allowed (for 'hit': when the subject is still below the limit
# afterwards), else {0, ms until the window ends}.
SCRIPT = """
local mode = ARGV[1]
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'n', 't')
local n = tonumber(h[1] or '0') or 0
local t = tonumber(h[2] or '') or now
local start = h[2]
if now >= t + window then
  n = 0
  t = now
  start = nil
end
local left = math.min(t + window - now, window)
if mode ~= 'hit' and n >= limit then return {0, left} end
if mode == 'peek' then return {1, 0} end
n = n + 1
redis.call('HSET', KEYS[1], 'n', n, 't', start or ARGV[4])
redis.call('PEXPIRE', KEYS[1], left + 1000)
if n >= limit and mode == 'hit' then return {0, left} end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` attempts per subject within ``seconds``."""

    name: str
    count: int
    seconds: int


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of the anonymous routes; the defaults are generous for a person, tight for a
    script: 30 holds a minute per address (a household or office behind one address tries a
    few slots each), 10 holds in 10 minutes per person, 20 failed token look-ups in 10 minutes
    per address (a mistyped link now and then; guessing a 256-bit token needs far more)."""

    holds_per_address: Limit = Limit("holds_per_address", 30, 60)
    holds_per_person: Limit = Limit("holds_per_person", 10, 600)
    token_failures_per_address: Limit = Limit("token_failures_per_address", 20, 600)


def address_subject(host: str | None) -> str:
    """What a client address counts as: an IPv4 address itself, an IPv6 address its /64
    network (an IPv4-mapped one its IPv4 address); anything else (a Unix socket, a test
    client) as given."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """Fixed-window counters in Redis (one Lua script). ``enabled=False`` allows everything
    without asking Redis (``SCHEDULER_RATE_LIMITS=off``, for load tests)."""

    def __init__(
        self,
        redis: Any,
        clock: Clock,
        secret: str,
        limits: Limits | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.limits = limits or Limits()
        self.enabled = enabled
        self._key = hmac.new(secret.encode(), b"ratelimit", hashlib.sha256).digest()
        self._script = redis.register_script(SCRIPT)
        self._warned_at = -math.inf

    def key(self, limit: Limit, subject: str) -> str:
        digest = hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{PREFIX}:{limit.name}:{digest}"

    async def check(self, limit: Limit, subject: str) -> None:
        """Count an attempt; raises RateLimited (counting nothing) when the subject already
        used up its window."""
        await self._run("check", limit, subject)

    async def blocked(self, limit: Limit, subject: str) -> None:
        """Raises RateLimited when the subject used up its window; counts nothing (call it
        before trying something whose failures ``hit`` counts)."""
        await self._run("peek", limit, subject)

    async def hit(self, limit: Limit, subject: str) -> None:
        """Count a failure; never raises (the next ``blocked`` answers)."""
        await self._run("hit", limit, subject, raise_over=False)

    # -- the routes' limits -----------------------------------------------------------------

    async def check_hold(self, address: str | None, person_keys: Iterable[str] = ()) -> None:
        """An anonymous hold (or one-step booking): per address, then per person identifier."""
        await self.check(self.limits.holds_per_address, address_subject(address))
        for person in person_keys:
            await self.check(self.limits.holds_per_person, person)

    async def check_token_lookup(self, address: str | None) -> None:
        """Before an anonymous token look-up: RateLimited when the address failed too often."""
        await self.blocked(self.limits.token_failures_per_address, address_subject(address))

    async def token_failed(self, address: str | None) -> None:
        await self.hit(self.limits.token_failures_per_address, address_subject(address))

    # -- internals --------------------------------------------------------------------------

    async def _run(self, mode: str, limit: Limit, subject: str, *, raise_over: bool = True) -> None:
        if not self.enabled:
            return
        now_ms = int(self.clock.now().astimezone(UTC).timestamp() * 1000)
        try:
            allowed, left_ms = await self._script(
                keys=[self.key(limit, subject)],
                args=[mode, limit.count, limit.seconds * 1000, now_ms],
            )
        except (RedisError, OSError):
            self._warn(limit)
            return
        if not allowed and raise_over:
            raise RateLimited(retry_after=max(1, math.ceil(int(left_ms) / 1000)))

    def _warn(self, limit: Limit) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("rate limits not enforced: Redis unavailable", extra={"limit": limit.name})
