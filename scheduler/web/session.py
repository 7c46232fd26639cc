"""Sessions of the hotline console (``/agent``) and the staff page (``/staff``).

Logging in posts an API key once; the key is checked as the API checks it
(:func:`scheduler.booking.apikeys.principal_for`) and never stored. The browser gets a cookie
that names the key by its id, not its secret::

    <area>.<key id>.<expiry, unix seconds>.<HMAC-SHA256, base64url>

signed under a key derived from the server secret (the same in every worker), so it cannot be
forged or moved to the other area. Every request checks the signature and the expiry (8 hours
after logging in), then reads the key's row again: a revoked key ends its sessions at once.

The cookie is ``Secure`` (Chromium keeps secure cookies on ``http://127.0.0.1`` and
``http://localhost``, which it treats as secure contexts; anywhere else the service belongs
behind https), ``HttpOnly``, ``SameSite=Strict`` and limited to the area's path.

A wrong key counts against the same failure limit as a wrong manage or feed token
(``token_failures_per_address``): an address that failed too often is told to wait before its
next key is even compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import QueryParameter
from litestar.response import Template

from scheduler.api.bookings import client_address, limiter
from scheduler.booking import models as m
from scheduler.booking.apikeys import Principal, principal_for
from scheduler.booking.bookings import Actor
from scheduler.booking.core import Core
from scheduler.booking.errors import DomainError, RateLimited, ValidationFailed
from scheduler.web import forms, texts
from scheduler.web.render import lang_of, page, see_other

SESSION_LIFETIME = timedelta(hours=8)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Area:
    """One logged-in part of the pages: its path, cookie and the roles let in."""

    name: str  # "agent" or "staff"
    path: str  # "/agent"
    roles: frozenset[m.Role]

    @property
    def cookie(self) -> str:
        return f"{self.name}_session"


AGENT = Area("agent", "/agent", frozenset({m.Role.AGENT, m.Role.ADMIN}))
STAFF = Area("staff", "/staff", frozenset({m.Role.STAFF, m.Role.ADMIN}))


class NotLoggedIn(Exception):
    """No valid session: the area's controller answers with its login page."""

    def __init__(self, area: Area) -> None:
        super().__init__(area.name)
        self.area = area


class WrongKey(Exception):
    """A key that is unknown, revoked, malformed, or of a role the area does not let in."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "unknown" or "role"


def core_of(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"pages session", hashlib.sha256).digest()


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(_signing_key(secret), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def cookie_value(secret: str, area: Area, key_id: str, expires: int) -> str:
    payload = f"{area.name}.{key_id}.{expires}"
    return f"{payload}.{_signature(secret, payload)}"


def read_cookie(secret: str, area: Area, value: str | None, now: int) -> str | None:
    """The key id of a valid, unexpired session cookie of ``area``; None otherwise."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != area.name:
        return None
    name, key_id, expires, signature = parts
    payload = f"{name}.{key_id}.{expires}"
    if not hmac.compare_digest(_signature(secret, payload).encode(), signature.encode()):
        return None
    if not expires.isdigit() or int(expires) <= now:
        return None
    return key_id


def _now_seconds(core: Core) -> int:
    return int(core.clock.now().timestamp())


async def _principal_by_id(core: Core, key_id: str) -> Principal | None:
    """The key's principal while the key is active (the row read again on each request)."""
    async with core.sessions() as session:
        row = await session.get(m.ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, m.Role(row.role), row.name, frozenset(row.calendar_ids))


async def current(request: Request[Any, Any, Any], area: Area) -> Principal:
    """The logged-in principal of the area, or :class:`NotLoggedIn`."""
    state = request.scope.setdefault("state", {})
    cached = state.get(f"{area.name}_principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    core = core_of(request)
    key_id = read_cookie(
        core.secret_key, area, request.cookies.get(area.cookie), _now_seconds(core)
    )
    principal = await _principal_by_id(core, key_id) if key_id else None
    if principal is None or principal.role not in area.roles:
        raise NotLoggedIn(area)
    state[f"{area.name}_principal"] = principal
    return principal


def actor(request: Request[Any, Any, Any], principal: Principal) -> Actor:
    """The acting key, as the API's actor of the same key."""
    return Actor(
        principal.key_id, principal.role.value, request.scope.get("state", {}).get("request_id")
    )


async def log_in(request: Request[Any, Any, Any], area: Area, secret: str) -> Principal:
    """Check a posted key as the API does; wrong keys count against the failure limit."""
    limits, address = limiter(request), client_address(request)
    await limits.check_token_lookup(address)
    principal: Principal | None = None
    if secret.startswith("sk_") and len(secret) <= MAX_KEY_LENGTH:
        async with core_of(request).sessions() as session:
            principal = await principal_for(session, secret)
    if principal is None:
        await limits.token_failed(address)
        raise WrongKey("unknown")
    if principal.role not in area.roles:
        raise WrongKey("role")
    return principal


def session_cookie(request: Request[Any, Any, Any], area: Area, principal: Principal) -> Cookie:
    core = core_of(request)
    expires = _now_seconds(core) + int(SESSION_LIFETIME.total_seconds())
    return Cookie(
        key=area.cookie,
        value=cookie_value(core.secret_key, area, principal.key_id, expires),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path=area.path,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def ended_cookie(area: Area) -> Cookie:
    """The session cookie removed (logging out)."""
    return Cookie(
        key=area.cookie, value="", max_age=0, expires=0, path=area.path, secure=True,
        httponly=True, samesite="strict",
    )  # fmt: skip


# -- the login and logout pages of both areas ---------------------------------------------------


def problem_of(exc: DomainError, lang: str) -> dict[str, Any]:
    """A refusal as the pages show it (the API's sentences)."""
    title, detail, fields = texts.problem_text(exc, lang)
    return {"title": title, "detail": detail, "fields": fields}


def not_logged_in(request: Request[Any, Any, Any], exc: NotLoggedIn) -> Response[Any]:
    query = {"lang": lang} if (lang := request.query_params.get("lang")) in texts.LANGUAGES else {}
    return see_other(f"{exc.area.path}/anmelden", **query)


def login_page(
    request: Request[Any, Any, Any],
    area: Area,
    *,
    status: int = 200,
    problem: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Template:
    return page(
        request, "login.html", status=status, title_key=f"{area.name}_login_title",
        brand=texts.text(lang_of(request), f"{area.name}_brand"), home_url=area.path,
        action=f"{area.path}/anmelden", area=area.name, problem=problem, notice=notice,
        labels={"key": texts.text(lang_of(request), "login_key")},
    )  # fmt: skip


async def do_login(request: Request[Any, Any, Any], area: Area) -> Response[Any] | Template:
    """The posted key checked; a session cookie on success, the login page (401) if not."""
    lang = lang_of(request)
    form = await request.form()
    try:
        secret = forms.field(form, "key", MAX_KEY_LENGTH)
    except ValidationFailed:
        secret = ""
    try:
        principal = await log_in(request, area, secret)
    except RateLimited as exc:
        answer = login_page(request, area, status=429, problem=problem_of(exc, lang))
        answer.headers["Retry-After"] = str(exc.params.get("retry_after", 60))
        return answer
    except WrongKey as exc:
        message = texts.text(lang, "login_wrong_role" if exc.reason == "role" else "login_wrong")
        refusal = {
            "title": texts.text(lang, "login_failed"),
            "detail": "",
            "fields": {"key": message},
        }
        return login_page(request, area, status=403 if exc.reason == "role" else 401,
                          problem=refusal)  # fmt: skip
    answer = see_other(area.path)
    answer.cookies.append(session_cookie(request, area, principal))
    return answer


def do_logout(area: Area) -> Response[Any]:
    answer = see_other(f"{area.path}/anmelden", abgemeldet="1")
    answer.cookies.append(ended_cookie(area))
    return answer


def back_to(request: Request[Any, Any, Any], path: str) -> Response[Any]:
    """A GET of a path that only takes forms (the language switch of a result page)."""
    query = {"lang": lang} if (lang := request.query_params.get("lang")) in texts.LANGUAGES else {}
    return see_other(path, **query)


class AreaPages(Controller):
    """The login, login form and logout of a console area (its ``area``); the area's pages
    subclass it."""

    area: ClassVar[Area]
    include_in_schema = False

    @get("/anmelden")
    async def login_form(
        self,
        request: Request[Any, Any, Any],
        abgemeldet: Annotated[str | None, QueryParameter(max_length=1)] = None,
    ) -> Template:
        notice = texts.text(lang_of(request), "logged_out") if abgemeldet else None
        return login_page(request, self.area, notice=notice)

    @post("/anmelden", status_code=303)
    async def login(self, request: Request[Any, Any, Any]) -> Response[Any] | Template:
        return await do_login(request, self.area)

    @post("/abmelden", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return do_logout(self.area)
