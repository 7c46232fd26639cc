"""A citizen books in real Chromium: service → day → time → details → confirmation → cancel, by
keyboard alone, at desktop and phone width, every page checked by axe-core and photographed for
the README; the same without JavaScript; a time lost to someone quicker; another time chosen
from the manage page; the pages in English."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.support import (
    LiveServer,
    api,
    axe_check,
    book,
    links_in,
    screenshot,
    tab_to,
    wait_for_mail,
)


def _keyboard_fill(page: Page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(text)


def _first_time(page: Page) -> str:
    return page.locator("ul.times button").first.get_attribute("value") or ""


def test_citizen_books_and_cancels_by_keyboard(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.url("/"))
    expect(page.locator("h1")).to_have_text("Termin buchen")
    axe_check(page)
    screenshot(page, "citizen-1-services")

    tab_to(page, "a[href='/termine/hund-anmelden']")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Hund anmelden")
    axe_check(page)
    screenshot(page, "citizen-2-days")

    tab_to(page, "ul.choices a >> nth=0")
    page.keyboard.press("Enter")
    expect(page.locator("h2").first).to_contain_text("Freie Zeiten am")
    axe_check(page)
    screenshot(page, "citizen-3-times")

    start = _first_time(page)
    tab_to(page, "ul.times button >> nth=0")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Ihre Angaben")
    expect(page.locator(".held")).to_contain_text("für Sie reserviert")
    axe_check(page)

    # a mistake first: the list of mistakes links to the field, the field says what is wrong
    _keyboard_fill(page, "#citizen-email", "erika-at-example")
    tab_to(page, "button.primary")
    page.keyboard.press("Enter")
    expect(page.locator(".problem")).to_be_visible()
    expect(page.locator("#citizen-name")).to_have_attribute("aria-invalid", "true")
    axe_check(page)
    screenshot(page, "citizen-4-details-mistakes")

    _keyboard_fill(page, "#citizen-name", "Erika Mustermann")
    page.locator("#citizen-email").fill("")
    _keyboard_fill(page, "#citizen-email", "erika.browser@example.org")
    screenshot(page, "citizen-4-details")
    tab_to(page, "button.primary")
    page.keyboard.press("Enter")

    expect(page.locator("h1")).to_have_text("Ihr Termin ist gebucht")
    code = page.locator(".code").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", code)
    expect(page.locator("a[download]")).to_have_attribute("href", re.compile(r"calendar\.ics"))
    assert page.url.startswith(live_server.url("/buchung/"))
    # the time chosen is the booking's: its day and its time of day
    when = page.locator("main dd", has_text=re.compile(r"\d{2}:\d{2}–\d{2}:\d{2}")).first
    expect(when).to_contain_text(f"{int(start[8:10])}. ")
    expect(when).to_contain_text(f"{start[11:16]}–")
    axe_check(page)
    screenshot(page, "citizen-5-confirmation")

    tab_to(page, "button.danger")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Ihr Termin ist abgesagt")
    axe_check(page)
    screenshot(page, "citizen-6-cancelled")


def test_the_whole_flow_works_without_javascript(nojs_page: Page, live_server: LiveServer) -> None:
    page = nojs_page
    page.goto(live_server.url("/"))
    page.get_by_role("link", name=re.compile("Hund abmelden")).click()
    page.locator("ul.choices a").first.click()
    page.locator("ul.times button").first.click()
    page.fill("#citizen-name", "Otto Ohnescript")
    page.fill("#citizen-phone", "03935 123456")
    page.locator("button.primary").click()
    expect(page.locator("h1")).to_have_text("Ihr Termin ist gebucht")
    expect(page.locator(".notice")).to_contain_text("keine E-Mail-Adresse")
    page.locator("button.danger").click()
    expect(page.locator("h1")).to_have_text("Ihr Termin ist abgesagt")


def test_a_time_lost_to_someone_quicker(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.url("/termine/meldebescheinigung"))
    page.locator("ul.choices a").first.click()
    start = _first_time(page)
    # while the citizen looks at the times, others take every seat of the first one
    while True:
        status, _ = api(
            live_server, "POST", "/api/v1/holds",
            {"service_id": "meldebescheinigung", "start": start},
        )  # fmt: skip
        if status != 201:
            break
    page.locator("ul.times button").first.click()
    expect(page.locator("h1")).to_have_text("Diese Zeit ist gerade vergeben worden")
    offered = page.locator("ul.times button")
    expect(offered.first).to_be_visible()
    assert start not in [b.get_attribute("value") for b in offered.all()]
    axe_check(page)
    screenshot(page, "citizen-race-lost")
    offered.first.click()  # one click takes the next free time
    expect(page.locator("h1")).to_have_text("Ihre Angaben")


def test_choose_another_time_from_the_manage_page(page: Page, live_server: LiveServer) -> None:
    booking = book(live_server)
    page.goto(booking.manage_url)
    expect(page.locator("h1")).to_have_text("Ihr Termin")
    axe_check(page)
    screenshot(page, "citizen-manage")
    page.get_by_role("link", name="Anderen Termin wählen").click()
    axe_check(page)
    page.locator("ul.choices a").nth(1).click()
    axe_check(page)
    page.locator("ul.times button").first.click()
    expect(page.locator("h1")).to_have_text("Ihr Termin ist verschoben")


def test_pages_in_english(desktop_page: Page, live_server: LiveServer) -> None:
    page = desktop_page
    page.goto(live_server.url("/"))
    page.get_by_role("link", name="Switch to English").click()
    expect(page.locator("h1")).to_have_text("Book an appointment")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("link", name=re.compile(r"^Register a dog")).click()
    expect(page.locator("h2").first).to_have_text("Choose a day")
    axe_check(page)


def test_an_opt_in_is_confirmed_with_the_e_mails_link(page: Page, live_server: LiveServer) -> None:
    """The passport service asks for an e-mail opt-in: the booking waits; the link in the
    message opens a page whose button (by keyboard) confirms it."""
    booking = book(live_server, service_id="reisepass-beantragen")
    assert booking.answer["status"] == "pending"
    page.goto(booking.manage_url)
    expect(page.locator(".held")).to_contain_text("wartet auf Ihre Bestätigung")
    expect(page.get_by_role("button", name="Termin verbindlich buchen")).to_have_count(0)
    message = wait_for_mail(live_server, booking.email)
    link = next(u for u in links_in(message) if "/bestaetigen?token=" in u)
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Buchung bestätigen")
    axe_check(page)
    screenshot(page, "citizen-opt-in")
    tab_to(page, page.get_by_role("button", name="Termin verbindlich buchen"))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Ihr Termin ist bestätigt")
    axe_check(page)


def test_error_pages_are_pages_too(page: Page, live_server: LiveServer) -> None:
    for path, heading in (
        ("/buchung/AAAA-BBBB?token=falsch", "Nicht gefunden"),
        ("/termine/katze", "Nicht gefunden"),
        ("/termine/hund-anmelden/tag/2026-13-45", "Das hat nicht geklappt"),
        ("/gibtsnicht", "Nicht gefunden"),  # no route at all
        ("/agent/gibtsnicht", "Nicht gefunden"),
        ("/staff/gibtsnicht", "Nicht gefunden"),
        ("/gibtsnicht?lang=en", "Not found"),
    ):
        page.goto(live_server.url(path))
        expect(page.locator("h1")).to_have_text(heading)
        axe_check(page)


def test_the_campaign_form_in_english(page: Page, live_server: LiveServer) -> None:
    """The first dose's form (birth date and postcode asked for, both doses booked together)
    and its mistakes, in English: accessible as the German pages."""
    page.goto(live_server.url("/termine/impfung-erstimpfung?lang=en"))
    page.locator("ul.choices a").first.click()
    page.locator("ul.times button").first.click()
    expect(page.locator("#citizen-birth_date")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    axe_check(page)
    page.locator("#citizen-name").fill("Erna Alt")
    page.locator("#citizen-phone").fill("03935 1234")
    page.locator("#citizen-birth_date").fill("01.01.1990")
    page.locator("#citizen-postcode").fill("39517")
    page.locator("button.primary").click()
    expect(page.locator(".problem")).to_be_visible()
    axe_check(page)
