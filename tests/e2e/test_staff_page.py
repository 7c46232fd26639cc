"""The staff page in Chromium: a clerk logs in, sees the day's agenda of their calendars, checks
someone in (by keyboard alone, and without JavaScript) and makes the subscription link; axe-core
on every page at desktop and phone width. Screenshots ``staff-*.png`` go to docs/screenshots/.

Attendance is recorded on the appointment's day only (check-in from two hours before), so these
tests run their own ``scheduler serve --demo`` whose clock is moved to 08:30 on the next Monday
(``SCHEDULER_CLOCK_OFFSET_SECONDS``): a 10:00 appointment of that day can be checked in at once.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.support import api, axe_check, screenshot, tab_to
from tests.serverproc import ServerProcess, free_port, minimal_env, start_server

BERLIN = ZoneInfo("Europe/Berlin")
CLERKS = ["sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3"]


@dataclass(frozen=True)
class ShiftedServer:
    process: ServerProcess
    base_url: str
    staff_key: str
    monday: datetime  # the server's "now": 08:30 in Berlin

    def url(self, path: str) -> str:
        return self.base_url + path


def next_monday_morning() -> datetime:
    today = datetime.now(BERLIN).date()
    monday = today + timedelta(days=7 - today.weekday())
    return datetime.combine(monday, time(8, 30), BERLIN)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShiftedServer]:
    work: Path = tmp_path_factory.mktemp("e2e-staff")
    port = free_port()
    monday = next_monday_morning()
    offset = int((monday - datetime.now(UTC)).total_seconds())
    env: dict[str, str | None] = {
        "SCHEDULER_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'scheduler.db'}",
        "SCHEDULER_BASE_URL": f"http://127.0.0.1:{port}",
        "SCHEDULER_RATE_LIMITS": "off",
        "SCHEDULER_CLOCK_OFFSET_SECONDS": str(offset),
    }
    with start_server(work, args=["--demo"], env=env, port=port) as process:
        done = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "keys", "create", "--role", "admin",
             "--name", "E2E Admin"],
            cwd=work, env=minimal_env(env), capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        admin = done.stdout.strip()
        server = ShiftedServer(process, process.base_url, "", monday)
        status, staff = api(
            server,  # type: ignore[arg-type]
            "POST", "/api/v1/keys",
            {"role": "staff", "name": "Frau Krüger", "calendar_ids": CLERKS}, key=admin,
        )  # fmt: skip
        assert status == 201, staff
        yield ShiftedServer(process, process.base_url, staff["key"], monday)


def book_today(server: ShiftedServer) -> tuple[str, str]:
    """A citizen's booking of "Hund anmelden" at a free time of the server's today from 10:00:
    (its code, the person's name)."""
    day = server.monday.date().isoformat()
    status, slots = api(
        server,  # type: ignore[arg-type]
        "GET", f"/api/v1/services/hund-anmelden/slots?from={day}&to={day}",
    )  # fmt: skip
    assert status == 200, slots
    start = next(s["start"] for s in slots if s["start"] >= f"{day}T10:00")
    mark = "".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=8)).capitalize()
    name = f"Erika Mustermann-{mark}"
    status, booking = api(
        server,  # type: ignore[arg-type]
        "POST", "/api/v1/bookings",
        {"service_id": "hund-anmelden", "start": start,
         "citizen": {"name": name, "email": f"{mark.lower()}@example.org"}},
    )  # fmt: skip
    assert status == 201, booking
    return booking["reference"], name


def log_in(page: Page, server: ShiftedServer) -> None:
    page.goto(server.url("/staff"))
    expect(page).to_have_url(re.compile(r"/staff/anmelden$"))
    page.get_by_label("API-Schlüssel").fill(server.staff_key)
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Terminliste")


def row_of(page: Page, reference: str):  # type: ignore[no-untyped-def]
    return page.locator("tr", has=page.get_by_text(reference, exact=True))


def test_staff_checks_someone_in(page: Page, shifted: ShiftedServer) -> None:
    reference, name = book_today(shifted)
    page.goto(shifted.url("/staff/anmelden"))
    axe_check(page)
    screenshot(page, "staff-login")
    log_in(page, shifted)
    row = row_of(page, reference)
    expect(row).to_contain_text(name)
    expect(page.locator("main")).to_contain_text("(heute)")
    axe_check(page)
    screenshot(page, "staff-agenda")

    row.get_by_role("button", name=re.compile("^Erschienen")).click()
    expect(page.get_by_role("status").first).to_contain_text(f"{reference}: als erschienen")
    expect(row_of(page, reference)).to_contain_text("erschienen")
    axe_check(page)
    screenshot(page, "staff-checked-in")
    status, seen = api(
        shifted,  # type: ignore[arg-type]
        "GET", f"/api/v1/bookings/{reference}", key=shifted.staff_key,
    )  # fmt: skip
    assert (status, seen["status"]) == (200, "checked_in")

    # the day switch, and back
    page.get_by_role("link", name=re.compile("^Nächster Tag")).click()
    expect(page.locator("main")).not_to_contain_text(name)
    page.get_by_role("link", name="Heute").click()
    expect(row_of(page, reference)).to_contain_text(name)


def test_the_feed_link_to_copy(page: Page, shifted: ShiftedServer) -> None:
    log_in(page, shifted)
    page.get_by_role("button", name=re.compile("^Abo-Link erzeugen")).first.click()
    link = page.get_by_label("Abo-Link")
    expect(link).to_have_value(re.compile(r"/feed\.ics\?token=ft_"))
    copy = page.get_by_role("button", name="Link kopieren")
    expect(copy).to_be_visible()  # the optional script shows it
    axe_check(page)
    screenshot(page, "staff-feed")
    url = link.input_value()
    status, _ = api(shifted, "GET", url.removeprefix(shifted.base_url))  # type: ignore[arg-type]
    assert status == 200


def test_check_in_by_keyboard_alone(desktop_page: Page, shifted: ShiftedServer) -> None:
    page = desktop_page
    reference, _ = book_today(shifted)
    page.goto(shifted.url("/staff"))
    tab_to(page, page.get_by_label("API-Schlüssel"))
    page.keyboard.type(shifted.staff_key)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    button = row_of(page, reference).get_by_role("button", name=re.compile("^Erschienen"))
    tab_to(page, button, max_tabs=80)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text(f"{reference}: als erschienen")


def test_staff_page_without_javascript(nojs_page: Page, shifted: ShiftedServer) -> None:
    page = nojs_page
    reference, _ = book_today(shifted)
    log_in(page, shifted)
    row_of(page, reference).get_by_role("button", name=re.compile("^Erschienen")).click()
    expect(page.get_by_role("status").first).to_contain_text(f"{reference}: als erschienen")
    page.get_by_role("button", name=re.compile("^Abo-Link erzeugen")).first.click()
    expect(page.get_by_label("Abo-Link")).to_have_value(re.compile(r"token=ft_"))
    expect(page.get_by_role("button", name="Link kopieren")).to_be_hidden()  # no script
