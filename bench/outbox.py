"""Outbox benchmark: 10,000 due messages to a local SMTP server, end to end.

    python -m bench.outbox [--messages 10000] [--workers 1] [--processes] [--postgres]
                           [--smtp process|thread]

A database of its own (a SQLite file in a temporary folder; ``--postgres`` creates and drops a
PostgreSQL database beside SCHEDULER_BENCH_DATABASE_URL) is seeded with the demo municipality,
then gets ``--messages`` bookings with an e-mail address and one due confirmation each, inserted
in bulk (the fixture is not what is measured). An aiosmtpd server that only counts Message-IDs
runs in a process of its own (``--smtp thread``: a thread of this process), so it neither shares
the GIL with the sender nor limits it.

By default the real :class:`~scheduler.reminders.dispatch.Dispatcher` runs in this process with
one :class:`~scheduler.reminders.mailer.SmtpMailer` (``--workers N``: N dispatchers at once in
the same event loop); ``--processes`` starts N ``scheduler worker`` processes instead and waits
until every row is sent. Printed: messages/s end to end (first claim to last row recorded as
sent; for processes also from spawn), failures, retries and duplicates (Message-IDs the SMTP
server saw more than once).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.common import free_port
from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine, make_sessionmaker, migrate
from scheduler.booking.seed import apply_seed, load_seed_file
from scheduler.clock import SystemClock
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer
from scheduler.reminders.dispatch import Dispatcher
from scheduler.reminders.mailer import SmtpMailer
from scheduler.resources import demo_seed

PG = os.environ.get(
    "SCHEDULER_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SENDER = "Terminvergabe Tangerhütte <termine@tangerhuette.example>"
LOCATION = "rathaus"
SERVICES = ["hund-anmelden", "meldebescheinigung", "personalausweis-beantragen"]
CALENDAR = "sachbearbeitung-1"
CHUNK = 2_000
N = m.Notification
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


# -- the SMTP sink ---------------------------------------------------------------------------


class CountingHandler:
    """Accepts everything and counts Message-IDs; keeps nothing else."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        head = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        with self.lock:
            self.seen[found.group(1).decode() if found else "<none>"] += 1
        return "250 OK"

    def stats(self) -> tuple[int, int, int]:
        """(messages, distinct Message-IDs, Message-IDs seen more than once)."""
        with self.lock:
            total = sum(self.seen.values())
            return total, len(self.seen), sum(1 for n in self.seen.values() if n > 1)


def _controller(handler: CountingHandler, port: int) -> Any:
    from aiosmtpd.controller import Controller

    # data_size_limit=0: no size check (the messages are ~5 kB anyway)
    return Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=0)


def _sink_main(port: int, conn: multiprocessing.connection.Connection) -> None:
    """The SMTP server process: answers ``stats`` until told ``stop``."""
    handler = CountingHandler()
    controller = _controller(handler, port)
    controller.start()
    conn.send("ready")
    try:
        while True:
            command = conn.recv()
            if command == "stop":
                break
            conn.send((*handler.stats(), time.process_time()))
    finally:
        controller.stop()


class Sink:
    """The counting SMTP server, in a process (default) or a thread of this process."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        self._handler: CountingHandler | None = None
        self._controller: Any = None
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None

    def start(self) -> None:
        if self.mode == "thread":
            self._handler = CountingHandler()
            self._controller = _controller(self._handler, self.port)
            self._controller.start()
            return
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_sink_main, args=(self.port, child), daemon=True)
        self._process.start()
        self._conn = parent
        if not parent.poll(30) or parent.recv() != "ready":
            raise RuntimeError("the SMTP sink did not start")

    def stats(self) -> tuple[int, int, int]:
        """(messages, distinct Message-IDs, Message-IDs seen more than once)."""
        return self.snapshot()[:3]

    def cpu(self) -> float | None:
        """CPU seconds the sink process has used so far (None for a thread)."""
        return self.snapshot()[3]

    def snapshot(self) -> tuple[int, int, int, float | None]:
        """``stats()`` and the sink process's CPU seconds so far (None for a thread)."""
        if self._handler is not None:
            return (*self._handler.stats(), None)
        assert self._conn is not None
        self._conn.send("stats")
        result: tuple[int, int, int, float] = self._conn.recv()
        return result

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
        if self._process is not None:
            if self._conn is not None:
                with suppress(OSError):
                    self._conn.send("stop")
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


# -- the database ----------------------------------------------------------------------------


def _admin(sql: str) -> None:
    async def run() -> None:
        engine = create_async_engine(PG, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


async def prepare(url: str, messages: int, now: datetime) -> None:
    """Migrate, seed the demo, insert ``messages`` bookings with one due confirmation each."""
    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session, session.begin():
            await apply_seed(session, load_seed_file(demo_seed()), now)
        day = (now + timedelta(days=3)).replace(hour=7, minute=0, second=0, microsecond=0)
        for first in range(0, messages, CHUNK):
            bookings, appointments, rows = [], [], []
            for n in range(first, min(first + CHUNK, messages)):
                booking_id = uuid.uuid4().hex
                start = day + timedelta(minutes=15 * (n % 40), days=n // 40 % 60)
                end = start + timedelta(minutes=15)
                service = SERVICES[n % len(SERVICES)]
                bookings.append(
                    {
                        "id": booking_id,
                        "reference": f"{n:08d}",
                        "status": m.BookingStatus.CONFIRMED.value,
                        "channel": "online",
                        "location_id": LOCATION,
                        "starts_at": start,
                        "ends_at": end,
                        "created_at": now,
                        "updated_at": now,
                        "attendee_name": f"Person {n}",
                        "contact_email": f"person{n}@example.org",
                        "person_keys": [],
                        "language": "en" if n % 5 == 0 else "de",
                        "consent": True,
                        "token_version": 1,
                        "sequence": 0,
                    }
                )
                appointments.append(
                    {
                        "booking_id": booking_id,
                        "position": 0,
                        "service_ids": [service],
                        "starts_at": start,
                        "ends_at": end,
                        "calendar_ids": [CALENDAR],
                    }
                )
                rows.append(
                    {
                        "booking_id": booking_id,
                        "kind": "confirmation",
                        "due_at": now - timedelta(minutes=1),
                        "status": m.NotificationStatus.PENDING.value,
                        "attempts": 0,
                        "message_id": f"<bench-{n}.{uuid.uuid4().hex[:12]}@tangerhuette.example>",
                        "created_at": now,
                    }
                )
            async with engine.begin() as conn:
                await conn.execute(insert(m.Booking), bookings)
                await conn.execute(insert(m.Appointment), appointments)
                await conn.execute(insert(m.Notification), rows)
    finally:
        await engine.dispose()


async def outcome(url: str) -> dict[str, Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            by_status = select(N.status, func.count()).group_by(N.status)
            statuses = {status: n for status, n in await conn.execute(by_status)}
            retried = await conn.scalar(select(func.count()).where(N.attempts > 1))
            span = select(func.min(N.sent_at), func.max(N.sent_at))
            first, last = (await conn.execute(span)).one()
    finally:
        await engine.dispose()
    return {"statuses": statuses, "retried": retried, "first_sent": first, "last_sent": last}


# -- the senders -----------------------------------------------------------------------------


async def run_inprocess(url: str, redis_url: str, workers: int, port: int) -> float:
    """N Dispatchers in this event loop, each with its own SmtpMailer; seconds until done."""
    engine = make_engine(url)
    redis = connect(redis_url)
    core = Core(
        engine=engine, sessions=make_sessionmaker(engine), redis=redis, clock=SystemClock(),
        secret_key=SECRET, base_url="https://termine.tangerhuette.example",
    )  # fmt: skip
    await core.refresh_catalog(force=True)
    dispatchers = [
        Dispatcher(
            core,
            SmtpMailer("127.0.0.1", port, local_hostname="bench.localdomain"),
            sender=SENDER,
        )
        for _ in range(workers)
    ]
    try:
        started = time.perf_counter()
        reports = await asyncio.gather(*(d.run_once() for d in dispatchers))
        took = time.perf_counter() - started
    finally:
        await redis.aclose()
        await engine.dispose()
    for n, report in enumerate(reports):
        print(f"  dispatcher {n}: {report}")
    return took


def run_processes(
    url: str, redis_url: str, workers: int, port: int, messages: int, folder: Path
) -> float:
    """N ``scheduler worker`` processes; seconds from spawning them until every row is sent."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "SCHEDULER_DATABASE_URL": url,
        "SCHEDULER_REDIS_URL": redis_url,
        "SCHEDULER_SECRET_KEY": SECRET,
        "SCHEDULER_SMTP_HOST": "127.0.0.1",
        "SCHEDULER_SMTP_PORT": str(port),
        "SCHEDULER_MAIL_FROM": SENDER,
        "SCHEDULER_LOG_LEVEL": "WARNING",
    }
    procs = []
    started = time.perf_counter()
    for n in range(workers):
        log = (folder / f"worker-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "worker"],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        while True:
            done = asyncio.run(_count_done(url))
            if done >= messages:
                return time.perf_counter() - started
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {folder}/worker-*.log")
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def _count_done(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(
                    select(func.count()).where(
                        m.Notification.status.notin_(
                            [m.NotificationStatus.PENDING.value, m.NotificationStatus.SENDING.value]
                        )
                    )
                )
                or 0
            )
    finally:
        await engine.dispose()


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--processes", action="store_true", help="run `scheduler worker` processes")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--smtp", choices=["process", "thread"], default="process")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    pg_name = f"scheduler_bench_outbox_{os.getpid()}"
    if args.postgres:
        url = f"{PG.rpartition('/')[0]}/{pg_name}"
        _admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        _admin(f"CREATE DATABASE {pg_name}")
    else:
        url = f"sqlite+aiosqlite:///{folder / 'outbox.db'}"
    redis = RedisServer(folder / "redis")
    sink = Sink(args.smtp)
    try:
        redis.start()
        sink.start()
        setup = time.perf_counter()
        asyncio.run(prepare(url, args.messages, datetime.now(UTC)))
        print(
            f"{args.messages} due messages prepared in {time.perf_counter() - setup:.1f} s "
            f"({'PostgreSQL' if args.postgres else 'SQLite'}, SMTP sink in a {args.smtp})"
        )
        mode = f"{args.workers} `scheduler worker` process(es)" if args.processes else (
            f"{args.workers} in-process Dispatcher(s)"
        )  # fmt: skip
        print(f"sending with {mode} …")
        sink_cpu = sink.cpu()
        own_cpu = time.process_time()
        if args.processes:
            took = run_processes(url, redis.url, args.workers, sink.port, args.messages, folder)
        else:
            took = asyncio.run(run_inprocess(url, redis.url, args.workers, sink.port))
        deadline = time.monotonic() + 10
        while sink.stats()[0] < args.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        received, distinct, twice, sink_after = sink.snapshot()
        own_cpu = time.process_time() - own_cpu
        result = asyncio.run(outcome(url))
        statuses = result["statuses"]
        sent = statuses.get("sent", 0)
        print(f"rows by status:      {dict(sorted(statuses.items()))}")
        print(f"SMTP received:       {received} messages, {distinct} distinct Message-IDs")
        print(f"duplicates:          {twice} Message-IDs seen more than once")
        print(f"failures:            {statuses.get('failed', 0)} failed, "
              f"{result['retried']} needed more than one attempt, "
              f"{statuses.get('pending', 0) + statuses.get('sending', 0)} not sent")  # fmt: skip
        label = "spawn to last sent" if args.processes else "end to end"
        print(f"time ({label}):  {took:.2f} s")
        print(f"throughput:          {sent / took:.0f} messages/s ({label})")
        if args.processes and result["first_sent"] and result["last_sent"]:
            span = (result["last_sent"] - result["first_sent"]).total_seconds()
            if span > 0:
                print(f"                     {sent / span:.0f} messages/s (first to last sent_at)")
        if not args.processes:
            print(f"sender CPU:          {1000 * own_cpu / max(sent, 1):.2f} ms per message "
                  f"(this process, {100 * own_cpu / took:.0f}% of one core)")  # fmt: skip
        if sink_cpu is not None and sink_after is not None:
            used = sink_after - sink_cpu
            print(f"SMTP sink CPU:       {1000 * used / max(received, 1):.2f} ms per message "
                  f"({100 * used / took:.0f}% of one core)")  # fmt: skip
        ok = sent == args.messages and received == args.messages and twice == 0
        return 0 if ok else 1
    finally:
        try:
            sink.stop()
        finally:
            redis.stop()
        if args.postgres:
            _admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
