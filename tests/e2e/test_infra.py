"""The browser-test infrastructure against a page that exists already: the manage page
``/buchung/{reference}?token=…`` (scheduler/web/manage.py). A booking made through the JSON API
is opened in Chromium, checked with axe-core, and cancelled with the keyboard alone, at desktop
and phone width and without JavaScript; screenshots go to docs/screenshots/."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.support import (
    LiveServer,
    api,
    axe_check,
    book,
    focused,
    form_of,
    links_in,
    screenshot,
    tab_to,
    wait_for_mail,
)

CANCEL = re.compile("absagen", re.IGNORECASE)


def _same_page(url: str, other: str) -> bool:
    """The same manage page: the path up to hyphens in the code, the same token."""
    a, b = urlsplit(url), urlsplit(other)
    token_a, token_b = parse_qs(a.query).get("token"), parse_qs(b.query).get("token")
    return (a.netloc, a.path.replace("-", ""), token_a) == (
        b.netloc,
        b.path.replace("-", ""),
        token_b,
    )


def _cancel_by_keyboard(page: Page) -> None:
    """Tab to the cancel button and press Enter: no mouse, no click()."""
    button = tab_to(page, page.get_by_role("button", name=CANCEL))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(button).to_have_count(0)


def test_manage_page_cancel_by_keyboard(page: Page, live_server: LiveServer) -> None:
    booking = book(live_server)
    page.goto(booking.manage_url)
    expect(page).to_have_title(re.compile(r"^Ihr Termin – "))
    expect(page.get_by_role("heading", level=1)).to_have_text("Ihr Termin")
    expect(page.locator("main")).to_contain_text("bestätigt")
    assert axe_check(page)["incomplete"] == []  # nothing axe-core could not decide either
    screenshot(page, "manage-booking")

    _cancel_by_keyboard(page)
    expect(page.locator("main")).to_contain_text("abgesagt")
    # the redirect after the form's post: the same booking (its code without the hyphen)
    assert _same_page(page.url, booking.manage_url), (page.url, booking.manage_url)
    axe_check(page)
    screenshot(page, "manage-cancelled")

    status, seen = api(
        live_server, "GET", f"/api/v1/bookings/{booking.reference}", key=booking.manage_token
    )
    assert status == 200, seen
    assert seen["status"] == "cancelled"


def test_manage_page_without_javascript(nojs_page: Page, live_server: LiveServer) -> None:
    booking = book(live_server)
    nojs_page.goto(booking.manage_url)
    expect(nojs_page.locator("main")).to_contain_text("bestätigt")
    _cancel_by_keyboard(nojs_page)
    expect(nojs_page.locator("main")).to_contain_text("abgesagt")
    status, seen = api(
        live_server, "GET", f"/api/v1/bookings/{booking.reference}", key=booking.manage_token
    )
    assert (status, seen["status"]) == (200, "cancelled")


def test_the_nojs_page_runs_no_script_of_the_page(nojs_page: Page) -> None:
    nojs_page.set_content(
        '<p id="state">off</p><script>document.getElementById("state").textContent = "on"</script>'
    )
    expect(nojs_page.locator("#state")).to_have_text("off")


def test_the_link_in_the_confirmation_mail_opens_the_booking(
    desktop_page: Page, live_server: LiveServer
) -> None:
    booking = book(live_server)
    message = wait_for_mail(live_server, booking.email)
    manage = [link for link in links_in(message) if "/buchung/" in link]
    assert manage, links_in(message)
    assert manage[0].startswith(live_server.base_url + "/buchung/")
    desktop_page.goto(manage[0])
    expect(desktop_page.locator("main")).to_contain_text("bestätigt")
    assert form_of(desktop_page) == "desktop"


def test_axe_check_fails_with_a_readable_list(desktop_page: Page) -> None:
    desktop_page.set_content(
        '<html><head><title>Test</title></head><body><main><h1>Test</h1><img src="x.png">'
        '<p style="color:#bbb;background:#fff">leise</p></main></body></html>'
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        axe_check(desktop_page)
    message = str(failed.value)
    for rule in ("html-has-lang (serious)", "image-alt (critical)", "color-contrast (serious)"):
        assert rule in message, message
    assert "    img: Fix any of the following:" in message, message


def test_axe_check_refuses_a_page_without_javascript(nojs_page: Page) -> None:
    nojs_page.set_content('<html lang="de"><title>Test</title><main><h1>Test</h1></main></html>')
    with pytest.raises(AssertionError, match="needs JavaScript"):
        axe_check(nojs_page)


def test_tab_to_is_bounded_and_shows_the_focus_order(phone_page: Page) -> None:
    phone_page.set_content(
        '<html lang="de"><title>Test</title><main><a href="#a">Eins</a>'
        '<button id="b">Zwei</button><button tabindex="-1" id="c">Drei</button></main></html>'
    )
    assert form_of(phone_page) == "phone"
    tab_to(phone_page, "#b")
    assert focused(phone_page) == "<button#b> Zwei"
    with pytest.raises(AssertionError) as failed:
        tab_to(phone_page, "#c", max_tabs=3)
    assert "#c never got the focus in 3 × Tab" in str(failed.value)
    assert "<a> Eins" in str(failed.value)
