"""Helpers of the browser tests: the live service and its JSON API, axe-core, screenshots and
the keyboard.

    booking = book(live_server)                      # through the JSON API, a fresh person
    page.goto(booking.manage_url)
    axe_check(page)                                  # no WCAG 2.1 A/AA violation, or it fails
    screenshot(page, "manage")                       # docs/screenshots/manage-desktop.png
    tab_to(page, "button[type=submit]")              # only the Tab key, bounded
    page.keyboard.press("Enter")
"""

from __future__ import annotations

import email
import email.policy
import functools
import itertools
import json
import os
import re
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Locator, Page

from tests.e2e import axe
from tests.e2e.axe import ROOT
from tests.reminders.smtp import SmtpServer
from tests.serverproc import ServerProcess

# Environment of the browser tests. Not SCHEDULER_*: the service refuses unknown SCHEDULER_*
# variables, and the benches hand the whole environment to the servers they start.
CHROMIUM_ENV = "E2E_CHROMIUM"  # the chromium binary (path or name on PATH) instead of Debian's
REQUIRED_ENV = "E2E_REQUIRED"  # "1": a missing browser or axe-core fails instead of skipping

SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE_MAX_WIDTH = 600  # narrower viewports are named "phone" in screenshot file names
# contexts made with java_script_enabled=False (the fixtures add them): axe-core cannot run there
NO_SCRIPT_CONTEXTS: weakref.WeakSet[BrowserContext] = weakref.WeakSet()

Form = Literal["desktop", "phone"]


@dataclass(frozen=True)
class LiveServer:
    """``scheduler serve --demo`` on a free port, a fresh SQLite database, its own Redis, and
    messages going to a real SMTP server in the test process (``smtp.recorder``)."""

    process: ServerProcess
    base_url: str
    agent_key: str  # sk_agent_…
    staff_key: str  # sk_staff_… for calendars sachbearbeitung-1 and schalter-1
    admin_key: str  # sk_admin_…
    smtp: SmtpServer
    work: Path  # the server's working directory (database, secret, logs)

    def url(self, path: str) -> str:
        return self.base_url + path


def api(
    server: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A JSON API call: status and decoded body (HTTP errors are answers too)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url(path), data=data, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    else:
        status = response.status
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass(frozen=True)
class Booking:
    reference: str  # e.g. "K7QM2X9D" as the API answers it
    manage_token: str
    start: str
    manage_path: str  # /buchung/{reference}?token=…
    manage_url: str
    name: str  # the citizen's name and e-mail address (unique per booking)
    email: str
    answer: dict[str, Any]  # the whole confirmation answer


_people = itertools.count(1)


def book(server: LiveServer, service_id: str = "hund-anmelden", days_ahead: int = 7) -> Booking:
    """Book the first free slot of ``service_id`` from ``days_ahead`` days on, as the README's
    tour does: hold it (POST /api/v1/holds), then confirm (POST /api/v1/bookings). Every call
    books for another person (one person may hold only one active booking)."""
    first = date.today() + timedelta(days=days_ahead)
    status, slots = api(
        server,
        "GET",
        f"/api/v1/services/{quote(service_id)}/slots?from={first}&to={first + timedelta(days=13)}",
    )
    assert status == 200, slots
    free = [slot for slot in slots if slot["free"] > 0]
    assert free, f"no free slot of {service_id} in the two weeks from {first}"
    status, hold = api(
        server, "POST", "/api/v1/holds", {"service_id": service_id, "start": free[0]["start"]}
    )
    assert status == 201, hold
    n = next(_people)
    citizen = {"name": f"Erika Mustermann {n}", "email": f"erika.{n}@example.org"}
    status, booking = api(
        server, "POST", "/api/v1/bookings", {"hold_id": hold["hold_id"], "citizen": citizen}
    )
    assert status == 201, booking
    path = f"/buchung/{quote(booking['reference'])}?token={quote(booking['manage_token'])}"
    return Booking(
        reference=booking["reference"],
        manage_token=booking["manage_token"],
        start=booking["start"],
        manage_path=path,
        manage_url=server.url(path),
        name=citizen["name"],
        email=citizen["email"],
        answer=booking,
    )


def required() -> bool:
    return os.environ.get(REQUIRED_ENV, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` (fail instead when E2E_REQUIRED=1, as in CI)."""
    if required():
        pytest.fail(f"{reason} ({REQUIRED_ENV}=1)", pytrace=False)
    pytest.skip(reason)


# -- messages -----------------------------------------------------------------------------------

_LINK = re.compile(r"https?://[^\s<>\"']+")


def wait_for_mail(server: LiveServer, recipient: str, timeout: float = 20.0) -> EmailMessage:
    """The first message the service sent to ``recipient`` (it sends every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        with server.smtp.recorder.lock:
            contents = [r.content for r in server.smtp.recorder.received if recipient in r.rcpt_tos]
        if contents:
            message = email.message_from_bytes(contents[0], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            return message
        if time.monotonic() >= deadline:
            raise AssertionError(f"no message to {recipient} within {timeout} s")
        time.sleep(0.2)


def links_in(message: EmailMessage) -> list[str]:
    """Every http(s) link in the text and HTML parts of ``message``, in order, no repeats."""
    found: list[str] = []
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.get_filename():
            text = part.get_content()
            for link in _LINK.findall(text.replace("&amp;", "&")):
                if link not in found:
                    found.append(link)
    return found


# -- axe-core -----------------------------------------------------------------------------------


def format_violations(violations: list[dict[str, Any]]) -> str:
    """axe's violations as readable lines: rule, impact, help, and each node's target."""
    lines = []
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation.get('impact') or 'no impact'}): "
            f"{violation['help']} [{violation.get('helpUrl', '')}]"
        )
        for node in violation.get("nodes", []):
            target = " ".join(
                ">".join(part) if isinstance(part, list) else str(part)
                for part in node.get("target", [])
            )
            summary = " ".join(str(node.get("failureSummary") or "").split())
            lines.append(f"    {target}: {summary}" if summary else f"    {target}")
    return "\n".join(lines)


@functools.cache
def _axe_script() -> str:
    return axe.fetch().read_text()


def axe_script() -> str:
    """The pinned axe.min.js (fetched with npm unless cached); skips without it."""
    try:
        return _axe_script()
    except axe.AxeUnavailable as exc:
        unavailable(str(exc))


def axe_check(page: Page) -> dict[str, Any]:
    """Run axe-core on ``page`` for WCAG 2.0/2.1 A and AA; fails with a readable list of the
    violations (rule, impact, help, target nodes). Returns axe's (trimmed) results, whose
    ``incomplete`` items need a human look.

    Not on a page without JavaScript (axe is a script): check the same page in a JS-enabled
    fixture; the server sends the same HTML."""
    if page.context in NO_SCRIPT_CONTEXTS:
        raise AssertionError(
            "axe_check needs JavaScript: run it on a page of desktop_page, phone_page or page"
        )
    results = axe_run(page, axe_script())
    violations = results["violations"]
    if violations:
        pytest.fail(
            f"axe-core {axe.AXE_CORE_VERSION}: {len(violations)} WCAG 2.1 A/AA violation(s) "
            f"on {page.url}:\n{format_violations(violations)}",
            pytrace=False,
        )
    return results


def axe_run(page: Page, script: str) -> dict[str, Any]:
    """Inject axe-core (unless the page has it) and run it for WCAG 2.0/2.1 A and AA."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=script)
    results: dict[str, Any] = page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            const strip = (items) => items.map((v) => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map((n) => ({target: n.target, html: n.html,
                                            failureSummary: n.failureSummary})),
            }));
            return {violations: strip(r.violations), incomplete: strip(r.incomplete),
                    passes: r.passes.map((p) => p.id), url: r.url};
        }""",
        AXE_TAGS,
    )
    return results


# -- screenshots --------------------------------------------------------------------------------


def form_of(page: Page) -> Form:
    """ "phone" for a viewport narrower than PHONE_MAX_WIDTH, else "desktop"."""
    size = page.viewport_size
    return "phone" if size is not None and size["width"] < PHONE_MAX_WIDTH else "desktop"


def screenshot(page: Page, name: str, form: Form | None = None) -> Path:
    """Save a full-page PNG of ``page`` as ``docs/screenshots/<name>-<desktop|phone>.png``
    (the form from the viewport width unless given); returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{form or form_of(page)}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# -- keyboard -----------------------------------------------------------------------------------

_DESCRIBE_FOCUS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body || el === document.documentElement) return "(body)";
    const name = (el.getAttribute("aria-label") || el.innerText || el.value || "").trim();
    const id = el.id ? "#" + el.id : "";
    return `<${el.tagName.toLowerCase()}${id}> ${name.slice(0, 60)}`;
}"""


def focused(page: Page) -> str:
    """A short description of the focused element, e.g. ``<button> Termin absagen``."""
    description: str = page.evaluate(_DESCRIBE_FOCUS)
    return description


def tab_to(page: Page, target: str | Locator, max_tabs: int = 40, *, back: bool = False) -> Locator:
    """Press Tab (Shift+Tab with ``back``) until ``target`` (a selector or locator of one
    element) has the focus; fails with the focus order seen after ``max_tabs`` presses."""
    locator = page.locator(target) if isinstance(target, str) else target
    key = "Shift+Tab" if back else "Tab"
    seen: list[str] = []
    for _ in range(max_tabs):
        page.keyboard.press(key)
        if locator.evaluate("(el) => el === document.activeElement"):
            return locator
        seen.append(focused(page))
    order = "\n".join(f"  {n}. {what}" for n, what in enumerate(seen, 1))
    raise AssertionError(f"{target} never got the focus in {max_tabs} × {key}:\n{order}")
