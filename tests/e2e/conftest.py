"""Fixtures of the browser tests: the real service, and Debian's Chromium through Playwright.

Every test in this package is marked ``browser``. Without a chromium binary (``chromium`` on
PATH, /usr/bin/chromium, or E2E_CHROMIUM) they are skipped with the reason; so they are when
Playwright cannot start it or axe-core cannot be had, unless E2E_REQUIRED=1 (CI) makes that a
failure. Playwright's sync API is used: its instance lives only while this package's tests run
(it marks its event loop as running between calls, which the suite's asyncio tests would mind).

Fixtures:
    live_server   (session)  LiveServer: base_url, agent_key, staff_key, admin_key, smtp, url()
    browser       (package)  a headless Chromium
    desktop_page             a Page at 1280×800
    phone_page               a Page at 390×844, is_mobile, has_touch
    page                     both: a test taking ``page`` runs once per form
    nojs_page                a Page at 1280×800 with JavaScript disabled
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.e2e.support import (
    CHROMIUM_ENV,
    NO_SCRIPT_CONTEXTS,
    LiveServer,
    api,
    required,
    unavailable,
)
from tests.reminders.smtp import HOST, SmtpServer
from tests.serverproc import free_port, minimal_env, start_server

HERE = Path(__file__).resolve().parent
DEBIAN_CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 15_000  # actions and navigations (the machine may be busy)
EXPECT_TIMEOUT_MS = 10_000  # expect(...) assertions (Playwright's default is 5 s)
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
STAFF_CALENDARS = ["sachbearbeitung-1", "schalter-1"]


def chromium_binary() -> str | None:
    """Debian's chromium (or the one E2E_CHROMIUM names); None when there is none."""
    wanted = os.environ.get(CHROMIUM_ENV)
    candidates = [wanted] if wanted is not None else ["chromium", DEBIAN_CHROMIUM]
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def _missing_reason() -> str:
    wanted = os.environ.get(CHROMIUM_ENV)
    if wanted is not None:
        return f"browser tests need Chromium: {CHROMIUM_ENV}={wanted!r} is no executable"
    return (
        "browser tests need Chromium: no `chromium` on PATH nor at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this package's tests ``browser``; skip them all when there is no Chromium."""
    binary = chromium_binary()
    skip = None if binary is not None or required() else pytest.mark.skip(_missing_reason())
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
            if skip is not None:
                item.add_marker(skip)


# -- the service --------------------------------------------------------------------------------


def _cli(work: Path, env: dict[str, str | None], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=work,
        env=minimal_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"scheduler {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``scheduler serve --demo`` on a free port with a fresh SQLite database in a temporary
    folder, its own Redis, messages to aiosmtpd, and an admin, an agent and a staff key.

    Rate limits are off: every request of the tests comes from 127.0.0.1."""
    work = tmp_path_factory.mktemp("e2e-server")
    port = free_port()
    with SmtpServer() as smtp:
        env: dict[str, str | None] = {
            "SCHEDULER_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'scheduler.db'}",
            "SCHEDULER_BASE_URL": f"http://127.0.0.1:{port}",
            "SCHEDULER_SMTP_HOST": HOST,
            "SCHEDULER_SMTP_PORT": str(smtp.port),
            "SCHEDULER_SMTP_TLS": "none",
            "SCHEDULER_RATE_LIMITS": "off",
        }
        with start_server(work, args=["--demo"], env=env, port=port) as process:
            admin = _cli(work, env, "keys", "create", "--role", "admin", "--name", "E2E Admin")
            server = LiveServer(process, process.base_url, "", "", admin, smtp, work)
            status, agent = api(
                server, "POST", "/api/v1/keys", {"role": "agent", "name": "E2E"}, key=admin
            )
            assert status == 201, agent
            status, staff = api(
                server,
                "POST",
                "/api/v1/keys",
                {"role": "staff", "name": "E2E Schalter", "calendar_ids": STAFF_CALENDARS},
                key=admin,
            )
            assert status == 201, staff
            yield LiveServer(
                process, process.base_url, agent["key"], staff["key"], admin, smtp, work
            )


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (without its sandbox when running as root)."""
    binary = chromium_binary()
    if binary is None:
        unavailable(_missing_reason())
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run sandboxed as root
    try:
        launched = playwright.chromium.launch(
            executable_path=binary, headless=True, args=args, timeout=60_000
        )
    except Exception as exc:
        unavailable(f"Playwright cannot start {binary}: {str(exc).splitlines()[0]}")
    yield launched
    launched.close()


def _context(browser: Browser, **options: Any) -> BrowserContext:
    context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin", **options)
    context.set_default_timeout(TIMEOUT_MS)
    if options.get("java_script_enabled") is False:
        NO_SCRIPT_CONTEXTS.add(context)
    return context


def _page(browser: Browser, **options: Any) -> Iterator[Page]:
    context = _context(browser, **options)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def desktop_page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, **DESKTOP)


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, **PHONE)


@pytest.fixture(params=["desktop", "phone"])
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A fresh page at desktop, then at phone width (the test runs once for each)."""
    yield from _page(browser, **(DESKTOP if request.param == "desktop" else PHONE))


@pytest.fixture
def nojs_page(browser: Browser) -> Iterator[Page]:
    """A desktop page with JavaScript disabled (the pages must work without it)."""
    yield from _page(browser, java_script_enabled=False, **DESKTOP)
