"""ASGI middleware: a request id, one log line per request (the canonical log line) and the
request metrics.

The logged path never includes the query string, so tokens in ``?token=`` never reach a log.
Metrics label a request by its route *template* (``/api/v1/bookings/{reference}``), never by the
path it was sent to. Requests to no route at all (404, 405 before routing) reach no middleware:
they are counted only as refusals, by :mod:`scheduler.api.problems`.

A few routes also count what they did (holds taken or refused, bookings created, cancelled,
rescheduled), from their status, the problem code the error handler left in the request's state
and, for a booking, its channel as the answer names it. An answer replayed for a repeated
``Idempotency-Key`` counts nothing again.
"""

from __future__ import annotations

import logging
import secrets
import time

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import metrics
from scheduler.api.problems import PROBLEM_CODE

log = logging.getLogger("scheduler.request")

REPLAYED = (b"idempotent-replayed", b"true")

# (method, route template) -> (the action counted, the status of success)
BOOKING_ACTIONS: dict[tuple[str, str], tuple[str, int]] = {
    ("POST", "/api/v1/bookings"): ("created", 201),
    ("POST", "/api/v1/bookings/{reference}/cancel"): ("cancelled", 200),
    ("POST", "/api/v1/bookings/{reference}/reschedule"): ("rescheduled", 200),
    ("POST", "/buchung/{reference}/absagen"): ("cancelled", 303),  # the manage page's form
}
HOLDS = ("POST", "/api/v1/holds")


class _Channel(msgspec.Struct):
    channel: str | None = None


_channel = msgspec.json.Decoder(_Channel)


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method = scope["method"]
        route = scope.get("path_template") or "unmatched"
        counted = (method, route)
        action = BOOKING_ACTIONS.get(counted)
        watched = action is not None or counted == HOLDS
        status = 500
        replayed = False
        body = b""

        async def send_wrapper(message: Message) -> None:
            nonlocal status, replayed, body
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if watched:
                    replayed = REPLAYED in headers
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            elif action is not None and not body and message["type"] == "http.response.body":
                body = message.get("body", b"")
            await send(message)

        metrics.IN_PROGRESS.inc()
        try:
            await app(scope, receive, send_wrapper)
        finally:
            metrics.IN_PROGRESS.dec()
            seconds = time.perf_counter() - started
            metrics.observe_request(method, route, status, seconds)
            if watched and not replayed:
                _count(action, status, body, state)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "ms": round(seconds * 1000, 2),
                        "request_id": request_id,
                    },
                )

    return middleware


def _count(
    action: tuple[str, int] | None, status: int, body: bytes, state: dict[str, object]
) -> None:
    """What a watched route did: a hold taken or refused (by code), a booking changed."""
    if action is None:  # POST /holds
        if status == 201:
            metrics.hold_taken()
        elif status >= 400:
            metrics.hold_refused(str(state.get(PROBLEM_CODE) or f"http_{status}"))
        return
    name, success = action
    if status != success:
        return
    channel = None
    if body:
        try:
            channel = _channel.decode(body).channel
        except msgspec.DecodeError:
            channel = None
    metrics.booking(name, channel)
