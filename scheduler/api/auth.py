"""Who is calling: API keys from ``Authorization: Bearer``, and guards per role.

Principals are cached for a few seconds per process, so a revoked key stops working within
``CACHE_SECONDS`` everywhere without a database look-up on every request.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityScheme

from scheduler.booking.apikeys import Principal, principal_for
from scheduler.booking.codes import stored_digest
from scheduler.booking.core import Core
from scheduler.booking.errors import NotFound
from scheduler.booking.models import Role

CACHE_SECONDS = 5.0
# The OpenAPI document's name for an API key, and what a guarded route declares it needs.
# (A booking's or waiting-list entry's own token is no scheme there: without it such a route
# answers the same 404 as for a booking that does not exist, by design; its description says so.)
API_KEY = "apiKey"
SECURITY_SCHEMES = {
    API_KEY: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="sk_<role>_<secret>",
        description=(
            "An API key of an agent (hotline), staff member or administrator, made with "
            "`scheduler keys create` or `POST /api/v1/keys`. Without it a guarded route is 401; "
            "with a key of another role 403."
        ),
    )
}
KEY_REQUIRED: list[dict[str, list[str]]] = [{API_KEY: []}]
# a citizen's route where a key changes the answer (an agent's is the phone channel)
KEY_OPTIONAL: list[dict[str, list[str]]] = [{}, {API_KEY: []}]
_cache: dict[str, tuple[float, Principal | None]] = {}


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The key's principal; None without a key. An unknown or revoked key is 401."""
    if "principal" in connection.scope.get("state", {}):
        return connection.scope["state"]["principal"]  # type: ignore[no-any-return]
    secret = bearer(connection)
    principal: Principal | None = None
    if secret is not None and secret.startswith("sk_"):
        digest = stored_digest(secret)
        now = time.monotonic()
        cached = _cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            core: Core = connection.app.state.core
            async with core.sessions() as session:
                principal = await principal_for(session, secret)
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (now + CACHE_SECONDS, principal)
        if principal is None:
            raise NotAuthorizedException()
    connection.scope.setdefault("state", {})["principal"] = principal
    return principal


async def own_calendar(connection: ASGIConnection[Any, Any, Any, Any], calendar_id: str) -> str:
    """The calendar, if it exists and the caller's key may act on it (staff: its calendars);
    otherwise the same 404 as for a calendar that does not exist."""
    principal = await current_principal(connection)
    core: Core = connection.app.state.core
    if calendar_id not in core.catalog.calendars or (
        principal is not None
        and principal.role is Role.STAFF
        and calendar_id not in principal.calendar_ids
    ):
        raise NotFound("calendar", calendar_id)
    return calendar_id


def forget_cached_keys() -> None:
    _cache.clear()


def require(*roles: Role) -> Any:
    """A guard: the caller needs a valid key of one of ``roles`` (admin always passes)."""
    allowed = {*roles, Role.ADMIN}

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await current_principal(connection)
        if principal is None:
            raise NotAuthorizedException()
        if principal.role not in allowed:
            raise PermissionDeniedException()

    guard.__name__ = f"require_{'_'.join(r.value for r in roles) or 'admin'}"
    return guard
