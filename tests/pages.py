"""The pages' forms in tests: every POST carries the CSRF token the pages' cookie holds (a page
sets the cookie; the form field must match it)."""

from __future__ import annotations

from typing import Any

CSRF_COOKIE = "csrf"
CSRF_FIELD = "_csrf_token"


async def csrf_token(client: Any) -> str:
    """The token of a test client's CSRF cookie (a page is opened to get one if needed)."""
    token = client.cookies.get(CSRF_COOKIE)
    if token is None:
        await client.get("/")
        token = client.cookies.get(CSRF_COOKIE)
    assert token, "the pages set no CSRF cookie"
    return str(token)


async def with_csrf(client: Any, data: dict[str, str]) -> dict[str, str]:
    """A form's fields with the CSRF token added."""
    return {**data, CSRF_FIELD: await csrf_token(client)}


def cookie_token(set_cookie: str) -> str:
    """The CSRF token of a ``Set-Cookie`` header."""
    for part in set_cookie.split(","):
        name, _, rest = part.strip().partition("=")
        if name == CSRF_COOKIE:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {CSRF_COOKIE} cookie in {set_cookie!r}")
