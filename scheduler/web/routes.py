"""The pages' router: citizens' flow, hotline console and staff pages behind CSRF protection,
their static files, and their error pages (the same problem codes, told as German sentences)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from litestar import Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.static_files import create_static_files_router

from scheduler import metrics
from scheduler.api.problems import EXCEPTION_HANDLERS as API_HANDLERS
from scheduler.api.problems import STATUS, connection_lost
from scheduler.booking import errors as e
from scheduler.settings import Settings
from scheduler.web import texts
from scheduler.web.agent import AgentPages
from scheduler.web.citizen import CitizenPages, problem_of
from scheduler.web.manage import ManagePages
from scheduler.web.render import HERE, lang_of, page
from scheduler.web.staff import StaffPages

log = logging.getLogger("scheduler.web")

CSRF_COOKIE = "csrf"
CSRF_FIELD = "_csrf_token"  # Litestar's form field name


def csrf_config(settings: Settings) -> CSRFConfig:
    """Double-submit tokens signed with a key derived from the server secret (the same in every
    worker), in a strict same-site cookie; secure when the service is served over https."""
    secret = hmac.new(
        (settings.secret_key or "").encode(), b"pages csrf", hashlib.sha256
    ).hexdigest()
    return CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_httponly=True,
        cookie_samesite="strict",
        cookie_secure=settings.base_url.startswith("https:"),
    )


def _domain_error(request: Request[Any, Any, Any], exc: e.DomainError) -> Response[Any]:
    lang = lang_of(request)
    status = STATUS.get(exc.code, 400)
    title_key = "not_found_title" if status == 404 else "error_title"
    return page(request, "error.html", status=status, title_key=title_key,  # type: ignore[return-value]
                problem=problem_of(exc, lang))  # fmt: skip


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    lang = lang_of(request)
    if isinstance(exc, PermissionDeniedException):
        return page(request, "error.html", status=403, title_key="csrf_title",  # type: ignore[return-value]
                    message=texts.text(lang, "csrf"))  # fmt: skip
    status = exc.status_code if 400 <= exc.status_code < 500 else 400
    title_key = "not_found_title" if status == 404 else "error_title"
    message = texts.text(lang, "not_found" if status == 404 else "csrf")
    if status not in (403, 404):
        message = texts.problem_text(
            e.ValidationFailed(e.FieldError("request", "invalid", message=exc.detail)), lang
        )[1]
    return page(request, "error.html", status=status, title_key=title_key, message=message)  # type: ignore[return-value]


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    lang = lang_of(request)
    if connection_lost(exc):
        log.warning("database connection lost on %s %s", request.method, request.url.path)
        answer = page(request, "error.html", status=503, title_key="error_title",
                      message=texts.text(lang, "unavailable"))  # fmt: skip
        answer.headers["Retry-After"] = "1"
        return answer  # type: ignore[return-value]
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return page(request, "error.html", status=500, title_key="error_title",  # type: ignore[return-value]
                message=texts.text(lang, "unavailable"))  # fmt: skip


EXCEPTION_HANDLERS = {
    e.DomainError: _domain_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}

API_PATHS = ("/api/", "/schema", "/health", "/metrics")
NO_ROUTE_CODES = {404: "not_found", 405: "method_not_allowed"}


def _app_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """An HTTP error before any router's own handlers, chiefly a path or method no route has:
    a problem (JSON) on the API's paths, a page on every other path (a browser's)."""
    if request.url.path.startswith(API_PATHS):
        return API_HANDLERS[HTTPException](request, exc)
    answer = _http_error(request, exc)
    metrics.refused(NO_ROUTE_CODES.get(answer.status_code, "bad_request"), answer.status_code)
    return answer


def app_exception_handlers() -> dict[type[Exception], Any]:
    """The app's handlers: the API's problems, but a page for a browser's path no route has."""
    return {**API_HANDLERS, HTTPException: _app_http_error}


def web_router(settings: Settings) -> Router:
    return Router(
        path="/",
        route_handlers=[CitizenPages, ManagePages, AgentPages, StaffPages],
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf_config(settings))],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        include_in_schema=False,
    )


def static_router() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[HERE / "static"],
        cache_control=CacheControlHeader(max_age=3600, public=True),
        include_in_schema=False,
        name="static",
    )
