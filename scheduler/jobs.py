"""The scheduled jobs, the same in every API process and in ``scheduler worker``.

APScheduler only says *when* to look; what is due lives in SQL (outbox rows, holds in Redis),
so a job missed while no process ran is simply done at the next run (``misfire_grace_time`` is
switched off and runs are coalesced).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.booking.core import Core
from scheduler.reminders.dispatch import Dispatcher
from scheduler.reminders.mailer import FileMailer, Mailer, SmtpMailer
from scheduler.settings import Settings

DISPATCH_SECONDS = 2
WAITLIST_SECONDS = 5  # lapse unanswered offers and opt-ins, offer freed series to the lists
RELEASE_SECONDS = 10  # give back held-back seats (a service's release delay) that are due


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when configured (always wins, in the demo too), else .eml files in the mail folder."""
    if settings.smtp_host:
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port or (465 if settings.smtp_tls == "tls" else 25),
            tls=settings.smtp_tls,
            user=settings.smtp_user,
            password=settings.smtp_password,
        )
    return FileMailer(Path(settings.mail_dir))


def make_dispatcher(core: Core, settings: Settings) -> Dispatcher:
    return Dispatcher(
        core,
        make_mailer(settings),
        sender=settings.mail_from,
        lease_seconds=settings.outbox_lease_seconds,
    )


def start_jobs(core: Core, dispatcher: Dispatcher) -> AsyncIOScheduler:
    jobs = AsyncIOScheduler(timezone="UTC")
    every: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
    jobs.add_job(dispatcher.run_once, "interval", seconds=DISPATCH_SECONDS, id="dispatch", **every)
    jobs.add_job(core.watch_counters, "interval", seconds=5, id="watch_counters", **every)
    jobs.add_job(core.sweep_holds, "interval", seconds=5, id="sweep_holds", **every)
    jobs.add_job(core.waitlist.run_once, "interval", seconds=WAITLIST_SECONDS, id="waitlist",
                 **every)  # fmt: skip
    jobs.add_job(core.release_holdbacks, "interval", seconds=RELEASE_SECONDS,
                 id="release_holdbacks", **every)  # fmt: skip
    jobs.add_job(core.rebuild_counters, "interval", seconds=60, id="reconcile", **every)
    jobs.add_job(core.materialize, "cron", hour=1, minute=5, id="horizon", **every)
    jobs.add_job(core.erase_expired, "cron", hour=2, minute=15, id="retention", **every)
    jobs.start()
    return jobs


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
