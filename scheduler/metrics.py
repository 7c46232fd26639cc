"""Prometheus metrics: what the service counts, and the text ``GET /metrics`` answers.

A leaf module (the standard library and prometheus-client only), like ``scheduler.clock``, so
the HTTP layer, the booking core and the outbox dispatcher can all count.

    scheduler_http_request_duration_seconds{method, route, status_class}   histogram
    scheduler_http_requests_in_progress                                    gauge
    scheduler_holds_taken_total                                            counter
    scheduler_holds_refused_total{code}                                    counter
    scheduler_bookings_total{action, channel}                              counter
    scheduler_refusals_total{code, status}                                 counter
    scheduler_messages_total{kind, outcome}                                counter

Every label value comes from a small closed set: a route *template* (``/api/v1/bookings/
{reference}``, never the path a client sent), an HTTP method, a status class, a problem code,
a channel, a message kind. No reference code, token, name or address ever becomes a label.

One process keeps its values in prometheus-client's default registry. With several worker
processes (``scheduler serve --workers N``), ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh private folder before the workers start; prometheus-client then keeps each process's
values in memory-mapped files there (it decides when it is first imported), and :func:`render`
adds up the files of every process, so whichever worker answers ``/metrics`` shows them all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# a booking answers in milliseconds; a slow SQL server or SMTP relay in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CHANNELS = frozenset({"online", "phone", "counter"})

REQUEST_SECONDS = Histogram(
    "scheduler_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and status class",
    ("method", "route", "status_class"),
    buckets=BUCKETS,
)
IN_PROGRESS = Gauge(
    "scheduler_http_requests_in_progress",
    "HTTP requests being answered right now (all workers together)",
    multiprocess_mode="livesum",
)
HOLDS_TAKEN = Counter(
    "scheduler_holds_taken_total",
    "Holds the reservation gate gave, for a hold or a one-step booking (API and pages alike)",
)
HOLDS_REFUSED = Counter(
    "scheduler_holds_refused_total",
    "Holds the booking core refused, by problem code (slot_full, limit_reached, ...)",
    ("code",),
)
BOOKINGS = Counter(
    "scheduler_bookings_total",
    "Bookings created (pending ones too), confirmed after waiting (e-mail opt-in, waiting-list "
    "offer), cancelled, lapsed and rescheduled, whichever way (API, pages, jobs), by channel",
    ("action", "channel"),
)
REFUSALS = Counter(
    "scheduler_refusals_total",
    "Problem-details answers (RFC 9457), by problem code and HTTP status",
    ("code", "status"),
)
MESSAGES = Counter(
    "scheduler_messages_total",
    "Outbox messages the dispatcher handled, by kind and outcome (sent, retried, failed, skipped)",
    ("kind", "outcome"),
)

# Label children by their values: a request costs a dictionary look-up, not a label parse.
_requests: dict[tuple[str, str, int], Histogram] = {}
_refusals: dict[tuple[str, int], Counter] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is the matched route's template."""
    key = (method, route, status // 100)
    child = _requests.get(key)
    if child is None:
        child = _requests[key] = REQUEST_SECONDS.labels(method, route, f"{status // 100}xx")
    child.observe(seconds)


def refused(code: str, status: int) -> None:
    """One problem-details answer."""
    key = (code, status)
    child = _refusals.get(key)
    if child is None:
        child = _refusals[key] = REFUSALS.labels(code, str(status))
    child.inc()


def hold_taken() -> None:
    HOLDS_TAKEN.inc()


def hold_refused(code: str) -> None:
    HOLDS_REFUSED.labels(code).inc()


def booking(action: str, channel: str | None) -> None:
    """A booking ``created``, ``confirmed``, ``cancelled``, ``lapsed`` or ``rescheduled``."""
    BOOKINGS.labels(action, channel if channel in CHANNELS else "unknown").inc()


def message(kind: str, outcome: str) -> None:
    """One outbox message handled: ``sent``, ``retried``, ``failed`` or ``skipped``."""
    MESSAGES.labels(kind, outcome).inc()


def render(multiprocess_dir: str | None) -> bytes:
    """The exposition text: this process's values, or with ``multiprocess_dir`` the sum over
    every process that wrote there (files of workers that died are counted too, so totals
    never go back; only their share of the in-progress gauge is dropped)."""
    if not multiprocess_dir:
        return generate_latest(REGISTRY)
    forget_dead_processes(multiprocess_dir)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    return generate_latest(registry)


_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def forget_dead_processes(multiprocess_dir: str) -> list[int]:
    """``mark_process_dead`` for every process whose live-gauge file is left in the folder
    (a worker that was killed and replaced): its requests in progress are no longer in
    progress. Returns those process ids."""
    dead = set()
    for path in Path(multiprocess_dir).glob("gauge_live*_*.db"):
        match = _LIVE_FILE.fullmatch(path.name)
        if match is not None and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, multiprocess_dir)
    return sorted(dead)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, is not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): the signal check has to do
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
