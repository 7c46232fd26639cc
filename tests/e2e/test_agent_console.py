"""The hotline console in Chromium: an agent logs in, books for a caller by phone, finds the
booking again by name and birth date, and reads the spelled code; the campaign's eligibility is
refused before anything is booked; moving and cancelling. axe-core on every page (desktop and
phone width), the keyboard alone for the main path, and the whole path without JavaScript.
Screenshots ``agent-*.png`` go to docs/screenshots/."""

from __future__ import annotations

import random
import re
import string
from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.e2e.support import LiveServer, api, axe_check, screenshot, tab_to

SPELLED = re.compile(r"^[0-9A-Z] wie \w+(, [0-9A-Z] wie \w+){7}$")


def caller() -> str:
    """A name nobody else in the session's database has (names are compared by their
    letters only, so the mark is made of letters)."""
    mark = "".join(random.choices(string.ascii_lowercase, k=10))
    return f"Hildegard Krause-{mark.capitalize()}"


def log_in(page: Page, server: LiveServer, *, keyboard: bool = False) -> None:
    page.goto(server.url("/agent"))
    expect(page).to_have_url(re.compile(r"/agent/anmelden$"))
    field = page.get_by_label("API-Schlüssel")
    if keyboard:
        tab_to(page, field)
        page.keyboard.type(server.agent_key)
        with page.expect_navigation():
            page.keyboard.press("Enter")
    else:
        field.fill(server.agent_key)
        page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Anruf bearbeiten")


def book_for_caller(page: Page, server: LiveServer, name: str, *, keyboard: bool = False) -> str:
    """From the console: the next free time of "Hund anmelden", booked for ``name`` (phone, no
    e-mail). Returns the booking code shown."""
    page.goto(server.url("/agent?leistung=hund-anmelden"))
    book = page.get_by_role("button", name=re.compile("^Für Anrufer buchen")).first
    if keyboard:
        tab_to(page, book, max_tabs=60)
        with page.expect_navigation():
            page.keyboard.press("Enter")
    else:
        book.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Für Anrufer buchen")
    expect(page.get_by_role("status").first).to_contain_text("reserviert")
    fields = {"#citizen-name": name, "#citizen-birth_date": "17.05.1941",
              "#citizen-phone": f"03935 {random.randrange(10**6, 10**7)}"}  # fmt: skip
    for selector, value in fields.items():
        field = page.locator(selector)
        if keyboard:
            tab_to(page, field)
            page.keyboard.type(value)
        else:
            field.fill(value)
    if keyboard:
        with page.expect_navigation():
            page.keyboard.press("Enter")  # the form's first button: "Verbindlich buchen"
    else:
        page.get_by_role("button", name="Verbindlich buchen").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Buchung")
    code = page.locator(".code-box .code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code), code
    return code


def test_agent_books_for_a_caller_and_finds_the_booking(
    page: Page, live_server: LiveServer
) -> None:
    log_in(page, live_server)
    axe_check(page)
    screenshot(page, "agent-console")

    name = caller()
    code = book_for_caller(page, live_server, name)
    main = page.locator("main")
    expect(main).to_contain_text("kein E-Mail – telefonisch informieren")
    expect(page.get_by_role("status").first).to_contain_text("Der Termin ist gebucht")
    spelled = page.locator(".spelled").inner_text().strip()
    assert SPELLED.match(spelled), spelled
    axe_check(page)
    screenshot(page, "agent-booked")

    # the API's finder tells the same code, spelled the same way, booked by phone
    status, found = api(
        live_server, "GET", f"/api/v1/agent/bookings?reference={quote(code)}",
        key=live_server.agent_key,
    )  # fmt: skip
    assert status == 200, found
    assert found[0]["channel"] == "phone"
    assert found[0]["spelled_reference"] == spelled

    # found again by name and birth date (a POST: nothing personal in the URL)
    page.goto(live_server.url("/agent"))
    page.locator("#name").fill(name.upper())
    page.locator("#birth_date").fill("17.05.1941")
    page.get_by_role("button", name="Person suchen").click()
    expect(page).to_have_url(re.compile(r"/agent/suche$"))
    assert quote(name.split()[0]) not in page.url
    expect(page.get_by_role("status")).to_contain_text("1 Buchung gefunden")
    axe_check(page)
    screenshot(page, "agent-results")
    page.get_by_role("link", name=code).click()
    expect(page.locator(".spelled")).to_have_text(spelled)

    # move: the next free time of another day; then cancel, with the question first
    page.get_by_role("link", name="Verschieben").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Termin verschieben")
    axe_check(page)
    screenshot(page, "agent-move")
    page.locator("ul.times button").last.click()
    expect(page.get_by_role("status").first).to_contain_text("Der Termin ist verschoben")
    page.get_by_role("link", name=re.compile("^Absagen")).click()
    axe_check(page)
    screenshot(page, "agent-cancel")
    page.get_by_role("button", name="Ja, Termin absagen").click()
    expect(page.get_by_role("status").first).to_contain_text("Der Termin ist abgesagt")
    status, found = api(
        live_server, "GET", f"/api/v1/agent/bookings?reference={quote(code)}",
        key=live_server.agent_key,
    )  # fmt: skip
    assert found[0]["status"] == "cancelled"


def test_campaign_eligibility_is_refused_before_booking(
    page: Page, live_server: LiveServer
) -> None:
    log_in(page, live_server)
    page.goto(live_server.url("/agent?leistung=impfung-erstimpfung"))
    page.get_by_role("button", name=re.compile("^Für Anrufer buchen")).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Voraussetzungen prüfen")
    axe_check(page)
    screenshot(page, "agent-check")
    page.locator("#citizen-name").fill(caller())
    page.locator("#citizen-birth_date").fill("01.01.1990")
    page.locator("#citizen-postcode").fill("39517")
    page.get_by_role("button", name="Voraussetzungen prüfen").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("76")
    axe_check(page)
    screenshot(page, "agent-not-eligible")
    page.locator("#citizen-birth_date").fill("14.03.1940")
    page.get_by_role("button", name="Voraussetzungen prüfen").click()
    expect(page.locator(".eligible[role=status]")).to_contain_text("Voraussetzungen erfüllt")
    axe_check(page)
    screenshot(page, "agent-eligible")
    page.get_by_role("button", name="Reservierung aufheben").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Anruf bearbeiten")


def test_agent_console_by_keyboard_alone(desktop_page: Page, live_server: LiveServer) -> None:
    page = desktop_page
    log_in(page, live_server, keyboard=True)
    book_for_caller(page, live_server, caller(), keyboard=True)
    expect(page.locator("main")).to_contain_text("kein E-Mail – telefonisch informieren")
    # the focus is visible: an outline on the focused control
    tab_to(page, page.get_by_role("link", name="Verschieben"))
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_agent_console_without_javascript(nojs_page: Page, live_server: LiveServer) -> None:
    page = nojs_page
    log_in(page, live_server)
    name = caller()
    code = book_for_caller(page, live_server, name)
    expect(page.locator("main")).to_contain_text("telefonisch informieren")
    page.goto(live_server.url("/agent"))
    page.locator("#reference").fill(code.lower())
    page.get_by_role("button", name="Code suchen").click()
    expect(page).to_have_url(re.compile(f"/agent/buchung/{code}$"))
    expect(page.locator("main")).to_contain_text(name)
    page.get_by_role("button", name="Abmelden").click()
    expect(page).to_have_url(re.compile(r"/agent/anmelden\?abgemeldet=1$"))
    page.goto(live_server.url("/agent"))
    expect(page).to_have_url(re.compile(r"/agent/anmelden$"))


def test_login_page(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.url("/agent/anmelden"))
    axe_check(page)
    screenshot(page, "agent-login")
    page.get_by_label("API-Schlüssel").fill("sk_agent_falsch")
    page.get_by_role("button", name="Anmelden").click()
    expect(page.get_by_role("alert")).to_contain_text("unbekannt oder wurde widerrufen")
    axe_check(page)
    cookies = page.context.cookies()
    assert not [c for c in cookies if c["name"] == "agent_session"]
    page.get_by_label("API-Schlüssel").fill(live_server.agent_key)
    page.get_by_role("button", name="Anmelden").click()
    session = next(c for c in page.context.cookies() if c["name"] == "agent_session")
    # Chromium keeps a Secure cookie on http://127.0.0.1 (a secure context)
    assert session["secure"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/agent"
    assert live_server.agent_key not in session["value"]
