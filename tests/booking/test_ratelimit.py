"""The rate limiter against the real Redis of the test session: fixed windows on the service's
clock, blocked-then-hit for failures, no personal data in keys, fail-open without Redis, and
the limits from ``SCHEDULER_RATE_LIMIT_*``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.booking.errors import RateLimited
from scheduler.booking.ratelimit import Limit, RateLimiter, address_subject
from scheduler.clock import ManualClock
from scheduler.redisconn import connect
from scheduler.settings import Settings, SettingsError
from tests.conftest import SECRET, T0

THREE_A_MINUTE = Limit("test", 3, 60)
ADDRESS = "198.51.100.7"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[object]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def limiter(redis: object, clock: ManualClock) -> RateLimiter:
    return RateLimiter(redis, clock, SECRET)


async def test_check_allows_the_count_then_refuses_until_the_window_ends(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    for _ in range(3):
        await limiter.check(THREE_A_MINUTE, ADDRESS)
    clock.advance(timedelta(seconds=20))
    with pytest.raises(RateLimited) as refused:
        await limiter.check(THREE_A_MINUTE, ADDRESS)
    assert refused.value.code == "rate_limited"
    assert refused.value.params == {"retry_after": 40}  # the window started with the first
    await limiter.check(THREE_A_MINUTE, "198.51.100.8")  # another subject: its own window
    await limiter.check(Limit("other", 3, 60), ADDRESS)  # another limit: its own counter
    clock.advance(timedelta(seconds=39, milliseconds=500))
    with pytest.raises(RateLimited) as almost:
        await limiter.check(THREE_A_MINUTE, ADDRESS)
    assert almost.value.params == {"retry_after": 1}  # rounded up, never 0
    clock.advance(timedelta(milliseconds=500))
    for _ in range(3):  # a new window
        await limiter.check(THREE_A_MINUTE, ADDRESS)
    with pytest.raises(RateLimited):
        await limiter.check(THREE_A_MINUTE, ADDRESS)


async def test_refused_attempts_do_not_extend_the_window(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    for _ in range(3):
        await limiter.check(THREE_A_MINUTE, ADDRESS)
    for _ in range(10):
        clock.advance(timedelta(seconds=5))
        with pytest.raises(RateLimited):
            await limiter.check(THREE_A_MINUTE, ADDRESS)
    clock.advance(timedelta(seconds=10))
    await limiter.check(THREE_A_MINUTE, ADDRESS)


async def test_blocked_counts_nothing_and_hit_counts_failures(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    for _ in range(10):
        await limiter.blocked(THREE_A_MINUTE, ADDRESS)  # looking is free
    for _ in range(3):
        await limiter.blocked(THREE_A_MINUTE, ADDRESS)
        await limiter.hit(THREE_A_MINUTE, ADDRESS)  # a failure never raises by itself
    with pytest.raises(RateLimited) as blocked:
        await limiter.blocked(THREE_A_MINUTE, ADDRESS)
    assert blocked.value.params == {"retry_after": 60}
    await limiter.hit(THREE_A_MINUTE, ADDRESS)  # more failures while blocked: no error
    clock.advance(timedelta(seconds=60))
    await limiter.blocked(THREE_A_MINUTE, ADDRESS)


async def test_keys_hold_no_address_or_personal_data(limiter: RateLimiter, redis: object) -> None:
    await limiter.check_hold("2001:db8::1", ["person-key-1"])
    await limiter.token_failed(ADDRESS)
    keys = sorted(k.decode() for k in await redis.keys("*"))  # type: ignore[attr-defined]
    assert len(keys) == 3
    assert all(re.fullmatch(r"rl:[a-z_]+:[0-9a-f]{32}", k) for k in keys), keys
    assert {k.split(":")[1] for k in keys} == {
        "holds_per_address",
        "holds_per_person",
        "token_failures_per_address",
    }
    for key in keys:
        stored = await redis.hgetall(key)  # type: ignore[attr-defined]
        assert set(stored) == {b"n", b"t"}
        assert await redis.pttl(key) > 0  # type: ignore[attr-defined]
    text = " ".join(keys)
    for secret in ("2001", "db8", "198.51", "person-key-1"):
        assert secret not in text
    other = RateLimiter(redis, ManualClock(T0), "another-secret-" * 3)
    assert other.key(THREE_A_MINUTE, ADDRESS) != limiter.key(THREE_A_MINUTE, ADDRESS)


def test_what_an_address_counts_as() -> None:
    assert address_subject("198.51.100.7") == "198.51.100.7"
    # one IPv6 /64 is one household or server
    assert address_subject("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_subject("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_subject("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_subject("fe80::1%eth0") == "fe80::/64"
    assert address_subject("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_subject("testclient") == "testclient"
    assert address_subject(None) == address_subject("") == "unknown"


async def test_an_ipv6_network_shares_one_counter(limiter: RateLimiter) -> None:
    for n in range(limiter.limits.holds_per_address.count):
        await limiter.check_hold(f"2001:db8:1:2::{n + 1:x}")
    with pytest.raises(RateLimited):
        await limiter.check_hold("2001:db8:1:2:ffff::1")
    await limiter.check_hold("2001:db8:1:3::1")


async def test_check_hold_counts_every_person_identifier(limiter: RateLimiter) -> None:
    per_person = limiter.limits.holds_per_person.count
    for n in range(per_person):
        await limiter.check_hold(f"198.51.100.{n}", ["email-key", f"phone-key-{n}"])
    with pytest.raises(RateLimited):  # the e-mail address is used up, whatever else comes
        await limiter.check_hold("203.0.113.1", ["phone-key-new", "email-key"])
    await limiter.check_hold("203.0.113.2", ["phone-key-other"])


async def test_switched_off_it_allows_everything_and_writes_nothing(
    redis: object, clock: ManualClock
) -> None:
    limiter = RateLimiter(redis, clock, SECRET, enabled=False)
    for _ in range(10):
        await limiter.check(THREE_A_MINUTE, ADDRESS)
        await limiter.hit(THREE_A_MINUTE, ADDRESS)
        await limiter.blocked(THREE_A_MINUTE, ADDRESS)
    assert await redis.keys("*") == []  # type: ignore[attr-defined]


async def test_without_redis_it_fails_open_and_warns_without_personal_data(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    gone = connect(f"unix://{tmp_path / 'nobody-listens.sock'}")
    limiter = RateLimiter(gone, clock, SECRET)
    with caplog.at_level(logging.WARNING, logger="scheduler.ratelimit"):
        for _ in range(5):
            await limiter.check_hold(ADDRESS, ["person-key"])
            await limiter.check_token_lookup(ADDRESS)
            await limiter.token_failed(ADDRESS)
    await gone.aclose()
    warnings = [r for r in caplog.records if r.name == "scheduler.ratelimit"]
    assert len(warnings) == 1  # once a minute, not once a request
    assert "Redis unavailable" in warnings[0].getMessage()
    assert ADDRESS not in repr(warnings[0].__dict__)
    assert "person-key" not in repr(warnings[0].__dict__)


# -- configuration ------------------------------------------------------------------------------


def test_limits_default_and_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert defaults.rate_limit_holds_per_address == (30, 60)
    assert defaults.rate_limit_holds_per_person == (10, 600)
    assert defaults.rate_limit_token_failures_per_address == (20, 600)
    settings = Settings.from_env(
        {
            "SCHEDULER_RATE_LIMIT_HOLDS_PER_ADDRESS": "100/60",
            "SCHEDULER_RATE_LIMIT_HOLDS_PER_PERSON": " 5 / 10m ",
            "SCHEDULER_RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS": "50/1h",
        }
    )
    assert settings.rate_limit_holds_per_address == (100, 60)
    assert settings.rate_limit_holds_per_person == (5, 600)
    assert settings.rate_limit_token_failures_per_address == (50, 3600)
    assert settings.safe_repr()["rate_limit_holds_per_person"] == (5, 600)


@pytest.mark.parametrize(
    "variable",
    [
        "SCHEDULER_RATE_LIMIT_HOLDS_PER_ADDRESS",
        "SCHEDULER_RATE_LIMIT_HOLDS_PER_PERSON",
        "SCHEDULER_RATE_LIMIT_TOKEN_FAILURES_PER_ADDRESS",
    ],
)
@pytest.mark.parametrize("value", ["30", "30/", "/60", "thirty/60", "30/60d", "0/60", "30/0",
                                   "30/25h", "-1/60", "", "2000000/60"])  # fmt: skip
def test_a_bad_limit_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value)
