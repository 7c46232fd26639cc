"""ASGI middleware: a request id, one log line per request (the canonical log line) and the
request metrics.

The logged path never includes the query string, so tokens in ``?token=`` never reach a log.
Metrics label a request by its route *template* (``/api/v1/bookings/{reference}``), never by the
path it was sent to. Requests to no route at all (404, 405 before routing) reach no middleware:
they are counted only as refusals, by :mod:`scheduler.api.problems`. Holds and bookings are
counted by the booking core, whichever way they came (API, pages, jobs).
"""

from __future__ import annotations

import logging
import secrets
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import metrics

log = logging.getLogger("scheduler.request")


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
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers  # type: ignore[typeddict-unknown-key]
            await send(message)

        metrics.IN_PROGRESS.inc()
        try:
            await app(scope, receive, send_wrapper)
        finally:
            metrics.IN_PROGRESS.dec()
            seconds = time.perf_counter() - started
            metrics.observe_request(method, route, status, seconds)
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
