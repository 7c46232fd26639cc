"""The outbox across real processes: ``scheduler worker`` OS processes send due messages to a
real SMTP server (aiosmtpd in this process), are killed with SIGKILL mid-send, and meet an SMTP
server that is down for a while. What makes a message durable is its outbox row, not anything a
process keeps in memory: a worker that starts later finds what is due in SQL.

Each test has a database of its own (a SQLite file; PostgreSQL when SCHEDULER_TEST_DATABASE_URL
is set: a database created for the test and dropped after it), seeded with the demo by
``scheduler seed``, and a private Redis. Bookings and their outbox rows are inserted directly in
SQL. Time moves for a worker through SCHEDULER_CLOCK_OFFSET_SECONDS (a worker started with an
offset beyond the 120 s lease, or the 30 s first back-off, sees it as over), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking import models as m
from scheduler.redisproc import RedisServer
from scheduler.resources import demo_seed
from tests.conftest import PG_URL, SECRET
from tests.reminders.smtp import SmtpServer
from tests.serverproc import descendants, free_port, gone_within, is_running, minimal_env

pytestmark = pytest.mark.slow

N = m.Notification
SENDER = "Terminvergabe Tangerhütte <termine@tangerhuette.example>"
LEASE = 120  # Dispatcher's default lease_seconds, which `scheduler worker` uses
FIRST_BACKOFF = 30
DISPATCH_EVERY = 2  # scheduler.jobs.DISPATCH_SECONDS
MESSAGES = 1000  # two workers, one SMTP server: each arrives once
PHONE_ONLY = 6000  # rows without an address ahead of them: many claims at the same moments
NEEDS_PG = pytest.mark.skipif(
    not PG_URL, reason="needs PostgreSQL: set SCHEDULER_TEST_DATABASE_URL"
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=NEEDS_PG),
]


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``scheduler worker`` process, its output in files."""

    process: subprocess.Popen[bytes]
    name: str
    stderr_path: Path
    offset: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def sent(self) -> int:
        """How many messages this worker says it sent."""
        return sum(1 for r in self.records() if r.get("msg") == "message sent")

    def running(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """Its jobs are scheduled; it prints this line right before its first dispatch run."""
        return "scheduler worker running" in self.log()

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last words, as when the machine loses power."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@dataclass
class Stack:
    backend: str
    db_url: str
    folder: Path
    redis: RedisServer
    smtp: SmtpServer
    engine: AsyncEngine
    workers: list[Worker] = field(default_factory=list)

    def env(self, offset: int = 0) -> dict[str, str]:
        return minimal_env(
            {
                "SCHEDULER_DATABASE_URL": self.db_url,
                "SCHEDULER_REDIS_URL": self.redis.url,
                "SCHEDULER_SECRET_KEY": SECRET,
                "SCHEDULER_SMTP_HOST": "127.0.0.1",
                "SCHEDULER_SMTP_PORT": str(self.smtp.port),
                "SCHEDULER_MAIL_FROM": SENDER,
                "SCHEDULER_LOG_LEVEL": "INFO",
                "SCHEDULER_CLOCK_OFFSET_SECONDS": str(offset),
            }
        )

    def start_worker(self, offset: int = 0, metrics_port: int | None = None) -> Worker:
        name = f"worker-{len(self.workers)}"
        metrics = ["--metrics-port", str(metrics_port)] if metrics_port is not None else []
        stderr_path = self.folder / f"{name}.stderr"
        with (self.folder / f"{name}.stdout").open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "worker", *metrics],
                cwd=self.folder,
                env=self.env(offset),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        worker = Worker(process, name, stderr_path, offset)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(
            f"--- {w.name} (offset {w.offset} s)\n{w.log()[-3000:]}" for w in self.workers
        )

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30.0
    ) -> None:
        """Poll ``check`` until it holds; fail with the workers' logs when it never does."""
        deadline = time.monotonic() + seconds
        while not await check():
            for worker in self.workers:  # stopped (0) or killed by the test: fine
                code = worker.process.poll()
                if code not in (None, 0, -signal.SIGKILL):
                    pytest.fail(f"{worker.name} exited with {code}:\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not within {seconds} s: {what}\n{self.logs()}")
            await asyncio.sleep(0.1)

    async def ready(self, *workers: Worker) -> None:
        async def check() -> bool:
            return all(w.ready() for w in workers)

        await self.eventually(check, "workers started", seconds=60)

    # -- SQL ------------------------------------------------------------------------------------

    async def insert_due(
        self, count: int, now: datetime | None = None, *, phone_only: int = 0
    ) -> list[str]:
        """``count`` confirmed bookings, each with one confirmation due now; their Message-IDs.

        ``phone_only`` more bookings without an e-mail address come first (due a second
        earlier): their rows need no SMTP, so senders go through them fast and claim often."""
        now = now or datetime.now(UTC)
        day = (now + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
        bookings, appointments, rows, ids = [], [], [], []
        for n in range(-phone_only, count):  # n < 0: a phone booking
            booking_id = uuid.uuid4().hex
            i = n + phone_only
            start = day + timedelta(minutes=15 * (i % 16), days=i // 16)
            end = start + timedelta(minutes=15)
            bookings.append(
                {
                    "id": booking_id,
                    "reference": f"W{n:07d}" if n >= 0 else f"P{-n:07d}",
                    "status": m.BookingStatus.CONFIRMED.value,
                    "channel": "online",
                    "location_id": "rathaus",
                    "starts_at": start,
                    "ends_at": end,
                    "created_at": now,
                    "updated_at": now,
                    "attendee_name": f"Person {i}",
                    "contact_email": f"person{n}@example.org" if n >= 0 else None,
                    "contact_phone": None if n >= 0 else f"+49391{-n:07d}",
                    "person_keys": [],
                    "language": "en" if n % 4 == 0 else "de",
                    "consent": True,
                    "token_version": 1,
                    "sequence": 0,
                }
            )
            appointments.append(
                {
                    "booking_id": booking_id,
                    "position": 0,
                    "service_ids": ["hund-anmelden"],
                    "starts_at": start,
                    "ends_at": end,
                    "calendar_ids": ["sachbearbeitung-1"],
                }
            )
            message_id = f"<outbox-test-{n}.{uuid.uuid4().hex[:16]}@tangerhuette.example>"
            if n >= 0:
                ids.append(message_id)
            rows.append(
                {
                    "booking_id": booking_id,
                    "kind": "confirmation",
                    "due_at": now - timedelta(seconds=1 if n >= 0 else 2),
                    "status": m.NotificationStatus.PENDING.value,
                    "attempts": 0,
                    "message_id": message_id,
                    "created_at": now,
                }
            )
        async with self.engine.begin() as conn:
            await conn.execute(insert(m.Booking), bookings)
            await conn.execute(insert(m.Appointment), appointments)
            await conn.execute(insert(N), rows)
        return ids

    async def rows(self) -> list[Any]:
        async with self.engine.connect() as conn:
            query = select(
                N.id, N.status, N.attempts, N.due_at, N.lease_until, N.last_error, N.message_id,
                N.created_at, N.sent_at,
            ).order_by(N.id)  # fmt: skip
            return list(await conn.execute(query))

    async def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in await self.rows():
            out[row.status] = out.get(row.status, 0) + 1
        return out

    async def all_sent(self) -> bool:
        rows = await self.rows()
        return bool(rows) and all(r.status == "sent" for r in rows)

    async def all_done(self) -> bool:
        rows = await self.rows()
        return bool(rows) and all(r.status not in ("pending", "sending") for r in rows)


def _admin(sql: str) -> None:
    async def run() -> None:
        engine = create_async_engine(PG_URL or "", poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


def _seed(folder: Path, db_url: str) -> None:
    env = minimal_env({"SCHEDULER_DATABASE_URL": db_url, "SCHEDULER_SECRET_KEY": SECRET,
                       "SCHEDULER_LOG_LEVEL": "WARNING"})  # fmt: skip
    seeded = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "seed", str(demo_seed())],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr


def _kill_leftovers(workers: list[Worker]) -> None:
    for worker in workers:
        pids = [worker.pid, *descendants(worker.pid)] if is_running(worker.pid) else []
        if worker.process.poll() is None:
            worker.stop()
        for pid in pids:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        gone_within(pids, 5)
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    backend = request.param
    pg_name = f"scheduler_outbox_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        db_url = f"{(PG_URL or '').rpartition('/')[0]}/{pg_name}"
        await asyncio.to_thread(_admin, f"CREATE DATABASE {pg_name}")
    else:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    redis = RedisServer(tmp_path / "redis")
    smtp = SmtpServer()
    engine = create_async_engine(db_url, poolclass=NullPool)
    stack = Stack(backend, db_url, tmp_path, redis, smtp, engine)
    try:
        await asyncio.to_thread(_seed, tmp_path, db_url)
        redis.start()
        smtp.start()
        yield stack
    finally:
        _kill_leftovers(stack.workers)
        smtp.stop()
        redis.stop()
        await engine.dispose()
        if backend == "postgresql":
            await asyncio.to_thread(_admin, f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


# -- the tests ----------------------------------------------------------------------------------


@NEEDS_PG
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
async def test_two_workers_send_1000_messages_each_exactly_once(stack: Stack) -> None:
    # 1,000 messages behind 6,000 rows of phone bookings (no e-mail address: nothing to send,
    # done in a millisecond or two each): the two workers claim batches often and at the same
    # moments, which is where a claim that is not exclusive would hand rows to both.
    ids = await stack.insert_due(MESSAGES, phone_only=PHONE_ONLY)
    port = free_port()
    first, second = stack.start_worker(metrics_port=port), stack.start_worker()
    await stack.eventually(stack.all_done, "all rows done", seconds=90)
    # every Message-ID arrived exactly once, and nothing else arrived
    counts = stack.smtp.recorder.counts()
    assert sorted(counts) == sorted(ids)
    assert [mid for mid, n in counts.items() if n != 1] == []
    assert sum(counts.values()) == MESSAGES
    rows = await stack.rows()
    assert await stack.statuses() == {"sent": MESSAGES, "not_applicable": PHONE_ONLY}
    assert {r.attempts for r in rows} == {1}  # no row was ever claimed twice
    assert all(r.lease_until is None for r in rows)
    # both workers took part, and together they sent each message once
    assert first.sent() > 0
    assert second.sent() > 0
    assert first.sent() + second.sent() == MESSAGES
    # the first worker's own figures, on its metrics port
    figures = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
    sent = sum(
        sample.value
        for family in text_string_to_metric_families(figures)
        for sample in family.samples
        if sample.name == "scheduler_messages_total" and sample.labels["outcome"] == "sent"
    )
    assert sent == first.sent()
    await asyncio.sleep(DISPATCH_EVERY + 0.5)  # another round of both: nothing more goes out
    assert sum(stack.smtp.recorder.counts().values()) == MESSAGES
    assert first.running()
    assert second.running()


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
async def test_a_worker_killed_mid_send_is_taken_over_after_its_lease(stack: Stack) -> None:
    recorder = stack.smtp.recorder
    recorder.delay_first = 5.0  # the first message waits for its "250": the sender is mid-send
    [message_id] = await stack.insert_due(1)
    doomed = stack.start_worker()
    await asyncio.to_thread(recorder.data_started.wait, 60)
    assert recorder.data_started.is_set(), stack.logs()
    [row] = await stack.rows()
    assert (row.status, row.attempts) == ("sending", 1)  # claimed, not yet recorded
    doomed.kill()  # SIGKILL to its pid while the server still holds back the "250"
    assert not is_running(doomed.pid)
    assert recorder.counts() == {message_id: 1}
    assert recorder.accepted() == {}  # the sender never got the answer

    # Within the lease, another worker leaves the claim alone ...
    patient = stack.start_worker()
    await stack.ready(patient)
    await asyncio.sleep(DISPATCH_EVERY + 0.5)  # and one more dispatch round of its own
    [row] = await stack.rows()
    assert (row.status, row.attempts) == ("sending", 1)
    assert recorder.counts() == {message_id: 1}
    assert patient.stop() == 0

    # ... and once the lease is over (its clock is 2 leases ahead), the message goes out again.
    heir = stack.start_worker(offset=2 * LEASE)
    await stack.eventually(stack.all_sent, "the message sent after the takeover")
    [row] = await stack.rows()
    assert row.attempts == 2  # the dead claim and the takeover
    assert row.lease_until is None
    assert recorder.counts() == {message_id: 2}  # at most one duplicate, same Message-ID
    assert recorder.accepted() == {message_id: 1}
    assert heir.sent() == 1
    await asyncio.sleep(DISPATCH_EVERY + 0.5)
    assert recorder.counts() == {message_id: 2}


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
async def test_smtp_down_for_a_while_then_up_every_message_arrives_once(stack: Stack) -> None:
    recorder = stack.smtp.recorder
    stack.smtp.stop()  # nothing listens on the SMTP port
    inserted_at = datetime.now(UTC)
    ids = await stack.insert_due(10, inserted_at)
    early = stack.start_worker()

    async def all_backing_off() -> bool:
        rows = await stack.rows()
        return all(r.status == "pending" and r.attempts >= 1 for r in rows)

    await stack.eventually(all_backing_off, "every row tried once and back to pending")
    for row in await stack.rows():
        assert row.last_error.startswith("temporary"), row.last_error
        assert row.lease_until is None
        # due again after the first back-off, counted from the failed try
        assert inserted_at + timedelta(seconds=FIRST_BACKOFF - 1) <= row.due_at
        assert row.due_at <= datetime.now(UTC) + timedelta(seconds=FIRST_BACKOFF + 1)
    assert recorder.message_ids() == []

    stack.smtp.start()  # the same port again
    await asyncio.sleep(DISPATCH_EVERY + 0.5)  # the early worker backs off: nothing is sent yet
    assert recorder.message_ids() == []
    assert {r.status for r in await stack.rows()} == {"pending"}

    # a worker whose clock is past the back-off sends them; the early one keeps running
    late = stack.start_worker(offset=2 * FIRST_BACKOFF)
    await stack.eventually(stack.all_sent, "all rows sent once SMTP is back")
    counts = recorder.counts()
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    assert recorder.accepted() == counts
    rows = await stack.rows()
    assert {r.attempts for r in rows} == {2}
    assert all(r.last_error is None for r in rows)
    assert early.sent() + late.sent() == 10  # (the late one, unless this machine is very slow)
    await asyncio.sleep(DISPATCH_EVERY + 0.5)  # a round of both workers later: still once each
    assert recorder.counts() == counts
    assert early.running()
    assert late.running()
