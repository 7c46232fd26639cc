"""``GET /metrics``: who may read it, what it counts (holds, bookings, refusals, messages,
latencies by route template), that no reference, token or name ever shows in it, and that
several worker processes of the real server add up to one set of figures.

Counters live as long as the test process, so every check compares a scrape before with one
after."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.jobs import make_dispatcher
from scheduler.reminders.mailer import SmtpMailer
from scheduler.settings import Settings
from tests.api.test_keys import bearer, make_key
from tests.pages import with_csrf
from tests.reminders.smtp import HOST, SmtpServer
from tests.serverproc import ServerProcess, minimal_env, read_cmdline, start_server
from tests.web.test_citizen_pages import csrf as csrf_field

Client = AsyncTestClient[Litestar]
START = "2026-11-30T09:00:00+01:00"
LATER = "2026-11-30T10:00:00+01:00"
CITIZEN = {"name": "Erika Mustermann", "email": "erika@example.org"}
Labels = frozenset[tuple[str, str]]


def parse(body: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition text, by name and labels."""
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


class Scrape:
    def __init__(self, body: str) -> None:
        self.text = body
        self.samples = parse(body)

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: Client, admin: str) -> Scrape:
    response = await client.get("/metrics", headers=bearer(admin))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    return Scrape(response.text)


@pytest.fixture
async def admin(core: Core) -> str:
    return await make_key(core, "admin")


async def test_only_an_admin_key_reads_the_metrics(client: Client, core: Core, admin: str) -> None:
    nobody = await client.get("/metrics")
    assert nobody.status_code == 401
    assert nobody.json()["code"] == "unauthorized"
    for role in ("agent", "staff"):
        calendars = ["sachbearbeitung-1"] if role == "staff" else None
        key = await make_key(core, role, calendars)
        refused = await client.get("/metrics", headers=bearer(key))
        assert refused.status_code == 403, role
    figures = await scrape(client, admin)
    assert "# TYPE scheduler_http_request_duration_seconds histogram" in figures.text
    assert "# TYPE scheduler_bookings_total counter" in figures.text
    # not part of the JSON API's contract
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


async def test_holds_and_bookings_through_the_api_are_counted(
    client: Client, core: Core, admin: str
) -> None:
    agent = bearer(await make_key(core, "agent"))
    before = await scrape(client, admin)

    held = await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": START})
    assert held.status_code == 201, held.text
    booked = await client.post(
        "/api/v1/bookings",
        json={"hold_id": held.json()["hold_id"], "citizen": CITIZEN},
        headers={"Idempotency-Key": "metrics-1"},
    )
    assert booked.status_code == 201, booked.text
    # a retried request replays the answer: it books nothing and counts nothing
    replay = await client.post(
        "/api/v1/bookings",
        json={"hold_id": held.json()["hold_id"], "citizen": CITIZEN},
        headers={"Idempotency-Key": "metrics-1"},
    )
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    token = {"Authorization": f"Bearer {booked.json()['manage_token']}"}
    reference = booked.json()["reference"]
    moved = await client.post(
        f"/api/v1/bookings/{reference}/reschedule", json={"start": LATER}, headers=token
    )
    assert moved.status_code == 200, moved.text
    cancelled = await client.post(f"/api/v1/bookings/{reference}/cancel", headers=token)
    assert cancelled.status_code == 200, cancelled.text
    # an agent books for a caller on the phone, in one step
    by_phone = await client.post(
        "/api/v1/bookings",
        json={"service_id": "hund-anmelden", "start": START, "citizen": {
            "name": "Karl Muster", "phone": "+49 3935 123456"}},
        headers=agent,
    )  # fmt: skip
    assert by_phone.status_code == 201, by_phone.text
    assert by_phone.json()["channel"] == "phone"

    after = await scrape(client, admin)

    def grew(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert grew("scheduler_holds_taken_total") == 2  # the hold, and the one-step booking's
    assert grew("scheduler_bookings_total", action="created", channel="online") == 1
    assert grew("scheduler_bookings_total", action="created", channel="phone") == 1
    assert grew("scheduler_bookings_total", action="rescheduled", channel="online") == 1
    assert grew("scheduler_bookings_total", action="cancelled", channel="online") == 1
    two_xx = {"method": "POST", "route": "/api/v1/bookings", "status_class": "2xx"}
    assert grew("scheduler_http_request_duration_seconds_count", **two_xx) == 3


async def test_holds_and_bookings_through_the_pages_are_counted(
    client: Client, core: Core, admin: str
) -> None:
    """The core counts, so a hold and a booking made on the citizens' pages and a cancellation
    on the manage page are in the figures as much as the API's."""
    before = await scrape(client, admin)
    page = await client.get(f"/termine/hund-anmelden/tag/{START[:10]}")
    held = await client.post(
        "/termine/hund-anmelden/reservieren",
        data={"_csrf_token": csrf_field(page.text), "start": START},
        follow_redirects=False,
    )
    assert held.status_code == 303, held.text
    form = await client.get(held.headers["location"])
    query = parse_qs(urlsplit(held.headers["location"]).query)
    booked = await client.post(
        "/termine/hund-anmelden/angaben",
        data={
            "_csrf_token": csrf_field(form.text),
            "start": query["start"][0],
            "reservierung": query["reservierung"][0],
            "bis": query["bis"][0],
            "citizen.name": CITIZEN["name"],
            "citizen.email": CITIZEN["email"],
        },
        follow_redirects=False,
    )
    assert booked.status_code == 303, booked.text
    manage = urlsplit(booked.headers["location"])
    token = parse_qs(manage.query)["token"][0]
    cancelled = await client.post(
        f"{manage.path}/absagen",
        data=await with_csrf(client, {"token": token}),
        follow_redirects=False,
    )
    assert cancelled.status_code == 303, cancelled.text
    after = await scrape(client, admin)

    def grew(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert grew("scheduler_holds_taken_total") == 1
    assert grew("scheduler_bookings_total", action="created", channel="online") == 1
    assert grew("scheduler_bookings_total", action="cancelled", channel="online") == 1


async def test_a_refusal_is_counted_by_code_and_status(client: Client, admin: str) -> None:
    before = await scrape(client, admin)
    for _ in range(3):  # the slot's three seats
        taken = await client.post(
            "/api/v1/holds", json={"service_id": "hund-anmelden", "start": START}
        )
        assert taken.status_code == 201, taken.text
    full = await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": START})
    assert full.status_code == 409
    assert full.json()["code"] == "slot_full"
    naive = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": "2026-11-30T09:00:00"}
    )
    assert naive.status_code == 422
    nowhere = await client.get("/api/v1/nowhere")  # no route: refused before any middleware
    assert nowhere.status_code == 404
    after = await scrape(client, admin)

    def grew(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert grew("scheduler_holds_taken_total") == 3
    assert grew("scheduler_holds_refused_total", code="slot_full") == 1
    # a time that carries no offset is refused before it reaches the booking core
    assert grew("scheduler_holds_refused_total", code="validation_failed") == 0
    assert grew("scheduler_refusals_total", code="slot_full", status="409") == 1
    assert grew("scheduler_refusals_total", code="validation_failed", status="422") == 1
    assert grew("scheduler_refusals_total", code="not_found", status="404") == 1
    four_xx = {"method": "POST", "route": "/api/v1/holds", "status_class": "4xx"}
    assert grew("scheduler_http_request_duration_seconds_count", **four_xx) == 2


async def test_latencies_carry_the_route_template_and_no_personal_data(
    client: Client, admin: str
) -> None:
    booked = await client.post(
        "/api/v1/bookings", json={"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN}
    )
    assert booked.status_code == 201, booked.text
    body = booked.json()
    reference, token = body["reference"], body["manage_token"]
    raw = reference.replace("-", "")
    before = await scrape(client, admin)
    for path in (f"/api/v1/bookings/{reference}", f"/api/v1/bookings/{raw.lower()}"):
        read = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 200, read.text
    page = await client.get(f"/buchung/{reference}", params={"token": token})
    assert page.status_code == 200
    wrong = await client.get(f"/api/v1/bookings/{reference}", headers=bearer("not-the-token"))
    assert wrong.status_code == 404
    after = await scrape(client, admin)

    route = "/api/v1/bookings/{reference}"
    ok = {"method": "GET", "route": route, "status_class": "2xx"}
    count = "scheduler_http_request_duration_seconds_count"
    assert after(count, **ok) - before(count, **ok) == 2
    not_found = {"method": "GET", "route": route, "status_class": "4xx"}
    assert after(count, **not_found) - before(count, **not_found) == 1
    assert after(count, method="GET", route="/buchung/{reference}", status_class="2xx") >= 1
    assert after("scheduler_http_request_duration_seconds_bucket", le="+Inf", **ok) >= 2
    templates = {route.path_format for route in client.app.routes}
    labelled = {dict(labels)["route"] for _, labels in after.samples if "route" in dict(labels)}
    assert labelled <= templates, labelled - templates
    for secret in (reference, raw, raw.lower(), token, CITIZEN["name"], CITIZEN["email"]):
        assert secret not in after.text


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


async def test_message_outcomes_of_the_dispatcher_are_counted(
    client: Client,
    settings: Settings,
    core: Core,
    clock: ManualClock,
    smtp: SmtpServer,
    admin: str,
) -> None:
    # the dispatcher the service builds from its settings, here with SMTP to aiosmtpd (on the
    # test's own event loop: the test client runs the app on another one)
    configured = msgspec.structs.replace(settings, smtp_host=HOST, smtp_port=smtp.port)
    dispatcher = make_dispatcher(core, configured)
    assert isinstance(dispatcher.mailer, SmtpMailer)

    async def book(start: str, email: str, name: str = "Erika Mustermann") -> None:
        citizen = {"name": name, "email": email}
        response = await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": start, "citizen": citizen},
        )
        assert response.status_code == 201, response.text

    before = await scrape(client, admin)
    await book(START, "erika@example.org")
    assert (await dispatcher.run_once()).sent == 1
    assert len(smtp.recorder.message_ids()) == 1

    smtp.recorder.reply = "451 4.3.0 try again later"
    await book(LATER, "hans@example.org", "Hans Meier")
    assert (await dispatcher.run_once()).retried == 1
    smtp.recorder.reply = "550 5.1.1 mailbox unavailable"
    clock.advance(timedelta(seconds=31))  # past the first back-off
    assert (await dispatcher.run_once()).failed == 1
    after = await scrape(client, admin)

    def grew(outcome: str) -> float:
        labels = {"kind": "confirmation", "outcome": outcome}
        return after("scheduler_messages_total", **labels) - before(
            "scheduler_messages_total", **labels
        )

    assert (grew("sent"), grew("retried"), grew("failed")) == (1, 1, 1)
    assert "hans@example.org" not in after.text


# --- several worker processes: the real server ---------------------------------------------


@pytest.fixture
def server_db() -> Iterator[str | None]:
    """PostgreSQL (a database of its own) when SCHEDULER_TEST_DATABASE_URL is set, else None:
    the demo's SQLite file in the server's folder."""
    url = os.environ.get("SCHEDULER_TEST_DATABASE_URL")
    if not url:
        yield None
        return
    name = f"scheduler_metrics_{os.getpid()}"
    base = url.rpartition("/")[0]

    async def admin(sql: str) -> None:
        engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    yield f"{base}/{name}"
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _cli(cwd: Path, env: dict[str, str | None], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=cwd,
        env=minimal_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def _metrics_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in environ:
        name, _, value = item.partition(b"=")
        if name == b"PROMETHEUS_MULTIPROC_DIR":
            return Path(value.decode())
    raise AssertionError(f"worker {pid} has no PROMETHEUS_MULTIPROC_DIR")


def _served_by(folder: Path, pid: int, route: str) -> float:
    """How many requests to ``route`` one worker observed, from its own file alone."""
    path = folder / f"histogram_{pid}.db"
    if not path.exists():
        return 0.0
    total = 0.0
    for family in MultiProcessCollector.merge([str(path)]):
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("route") == route:
                total += sample.value
    return total


async def _burst(base_url: str, requests: list[tuple[str, str, Any]]) -> list[int]:
    """Many requests at once, each on a connection of its own, so both workers take some."""
    connector = aiohttp.TCPConnector(limit=32, force_close=True)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:

        async def one(method: str, path: str, body: Any) -> int:
            async with session.request(method, path, json=body) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(*r) for r in requests))


def _scrape(server: ServerProcess, key: str) -> Scrape:
    request = urllib.request.Request(server.url("/metrics"), headers=bearer(key))
    with urllib.request.urlopen(request, timeout=10) as response:
        return Scrape(response.read().decode())


@pytest.mark.slow
def test_two_workers_add_up_in_metrics(tmp_path: Path, server_db: str | None) -> None:
    env: dict[str, str | None] = {"SCHEDULER_RATE_LIMITS": "off"}
    if server_db is not None:
        env["SCHEDULER_DATABASE_URL"] = server_db
    work = tmp_path / "server"
    with start_server(work, args=["--demo"], workers=2, env=env) as server:
        workers = server.worker_pids()
        assert len(workers) == 2, [read_cmdline(pid) for pid in server.children()]
        folder = _metrics_dir(workers[0])
        assert folder == _metrics_dir(workers[1])
        assert folder.is_dir()
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        key = _cli(work, env, "keys", "create", "--role", "admin", "--name", "prometheus")

        # reads, in bursts until both workers have answered some
        route, sent = "/api/v1/services", 0
        for _ in range(10):
            statuses = asyncio.run(_burst(server.base_url, [("GET", route, None)] * 60))
            assert statuses == [200] * 60
            sent += 60
            if all(_served_by(folder, pid, route) > 0 for pid in workers):
                break
        # a request is observed after its answer went out: the last one may still be on its way
        for _ in range(50):
            shares = [_served_by(folder, pid, route) for pid in workers]
            if sum(shares) == sent:
                break
            time.sleep(0.05)
        assert all(share > 0 for share in shares), shares
        assert sum(shares) == sent

        # bookings, from whichever worker takes them
        day = date.today() + timedelta(days=7)
        status, _, body = server.get(
            f"/api/v1/services/hund-anmelden/slots?from={day}&to={day + timedelta(days=6)}"
        )
        assert status == 200
        starts = [row["start"] for row in json.loads(body)][:8]
        assert len(starts) == 8
        bookings = [
            ("POST", "/api/v1/bookings", {
                "service_id": "hund-anmelden", "start": start,
                "citizen": {"name": f"Person {n}", "email": f"person{n}@example.org"},
            })
            for n, start in enumerate(starts)
        ]  # fmt: skip
        assert asyncio.run(_burst(server.base_url, bookings)) == [201] * 8

        # whichever worker answers /metrics, it shows every worker's figures
        count = {"method": "GET", "route": route, "status_class": "2xx"}
        for _ in range(6):
            figures = _scrape(server, key)
            assert figures("scheduler_http_request_duration_seconds_count", **count) == sent
            assert figures("scheduler_bookings_total", action="created", channel="online") == 8

    assert not folder.exists(), "serve removes its metrics folder when it stops"


def test_the_multiprocess_folder_forgets_dead_workers(tmp_path: Path) -> None:
    """A killed worker's requests in progress are no longer in progress; its counts stay."""
    from scheduler import metrics

    code = (
        "import os, signal;"
        "from scheduler import metrics;"
        "metrics.IN_PROGRESS.inc(); metrics.hold_taken();"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    root = Path(metrics.__file__).parent.parent
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(root)}
    child = subprocess.run([sys.executable, "-c", code], env=minimal_env(env), check=False)
    assert child.returncode == -9
    assert [p.name for p in tmp_path.glob("gauge_livesum_*.db")] == [
        f"gauge_livesum_{child_pid(tmp_path)}.db"
    ]
    figures = Scrape(metrics.render(str(tmp_path)).decode())
    assert figures("scheduler_http_requests_in_progress") == 0
    assert figures("scheduler_holds_taken_total") == 1
    assert not list(tmp_path.glob("gauge_livesum_*.db"))


def child_pid(folder: Path) -> int:
    (counter,) = folder.glob("counter_*.db")
    return int(counter.stem.rpartition("_")[2])
