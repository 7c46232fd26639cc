"""The Litestar application: factory and lifespan (wiring only)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components

from scheduler import __version__
from scheduler.api.admin import NotificationsController
from scheduler.api.agent import AgentController, AuditController
from scheduler.api.auth import SECURITY_SCHEMES
from scheduler.api.bookings import BookingsController, HoldsController
from scheduler.api.calendars import (
    CalendarFilesController,
    ClosuresController,
    FeedCache,
    FeedsController,
)
from scheduler.api.catalog import CatalogController, DayFragments, SlotsCache
from scheduler.api.closing import CloseCalendarController
from scheduler.api.health import health
from scheduler.api.keys import KeysController
from scheduler.api.metrics import prometheus_metrics
from scheduler.api.middleware import request_log_middleware
from scheduler.api.staff import AgendaController, AttendanceController
from scheduler.api.stats import StatsController
from scheduler.api.waitlist import WaitlistController
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine, make_sessionmaker, migrate
from scheduler.booking.ratelimit import Limit, Limits, RateLimiter
from scheduler.clock import Clock, SystemClock
from scheduler.jobs import make_dispatcher, start_jobs
from scheduler.logs import setup_logging
from scheduler.metrics import MULTIPROC_ENV
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer
from scheduler.settings import Settings
from scheduler.web.render import template_config
from scheduler.web.routes import app_exception_handlers, static_router, web_router

log = logging.getLogger("scheduler.app")

PREPARED_ENV = "_SCHEDULER_PREPARED"  # set by `scheduler serve` once it migrated and seeded


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    prepared: bool = False,
    run_jobs: bool = True,
    metrics_dir: str | None = None,
) -> Litestar:
    """The API. ``prepared``: the caller already migrated, materialized and built counters;
    ``run_jobs``: run the scheduled jobs (dispatch, sweeps, reconcile) in this process too;
    ``metrics_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` all worker processes write their metrics
    to (None: one process, its own values)."""
    settings = settings.with_secret()
    clock = clock or SystemClock(timedelta(seconds=settings.clock_offset_seconds))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        private: RedisServer | None = None
        redis_url = settings.redis_url
        if redis_url is None:
            private = RedisServer()
            private.start()
            redis_url = private.url
        engine = make_engine(settings.database_url)
        redis = connect(redis_url)
        jobs: AsyncIOScheduler | None = None
        try:
            if not prepared:
                await migrate(settings.database_url)
            core = Core(
                engine=engine,
                sessions=make_sessionmaker(engine),
                redis=redis,
                clock=clock,
                secret_key=settings.secret_key or "",
                hold_seconds=settings.hold_seconds,
                horizon_days=settings.horizon_days,
                unsafe_no_guard=settings.unsafe_disable_guards,
                base_url=settings.base_url,
                retention_days=settings.retention_days,
                offer_hours=settings.offer_hours,
            )
            await core.refresh_catalog(force=True)
            await core.start()
            if prepared:
                await core.take_over_counters()
            else:
                await core.materialize()
            app.state.core = core
            app.state.bookings = core.bookings
            app.state.settings = settings
            app.state.metrics_dir = metrics_dir
            app.state.slots_cache = SlotsCache()
            app.state.day_fragments = DayFragments()
            app.state.feed_cache = FeedCache()
            limits = _limits(settings)
            secret = settings.secret_key or ""
            app.state.rate_limiter = RateLimiter(
                redis, clock, secret, limits, enabled=settings.rate_limits
            )
            app.state.redis_server = private
            app.state.dispatcher = make_dispatcher(core, settings)
            if run_jobs:
                jobs = start_jobs(core, app.state.dispatcher)
            yield
        finally:
            if jobs is not None and jobs.running:
                jobs.shutdown(wait=False)
            if app.state.get("core") is not None:
                await app.state.core.stop()
            await redis.aclose()
            await engine.dispose()
            if private is not None:
                private.stop()

    api = Router(
        path="/api/v1",
        route_handlers=[
            CatalogController,
            HoldsController,
            BookingsController,
            CalendarFilesController,
            FeedsController,
            ClosuresController,
            KeysController,
            NotificationsController,
            AgendaController,
            AttendanceController,
            StatsController,
            AgentController,
            AuditController,
            CloseCalendarController,
            WaitlistController,
        ],
    )
    return Litestar(
        route_handlers=[
            api,
            health,
            prometheus_metrics,
            web_router(settings),
            static_router(),
        ],
        template_config=template_config(),
        lifespan=[lifespan],
        exception_handlers=app_exception_handlers(),
        middleware=[request_log_middleware],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="scheduler",
            version=__version__,
            description="Appointment and slot booking for a municipality's digital town hall.",
            path="/schema",
            components=Components(security_schemes=SECURITY_SCHEMES),
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(), JsonRenderPlugin()],
        ),
        debug=False,
        logging_config=None,
    )


def _limits(settings: Settings) -> Limits:
    return Limits(
        Limit("holds_per_address", *settings.rate_limit_holds_per_address),
        Limit("holds_per_person", *settings.rate_limit_holds_per_person),
        Limit("token_failures_per_address", *settings.rate_limit_token_failures_per_address),
    )


def app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` worker processes started by ``scheduler serve``."""
    settings = Settings.from_env(os.environ)
    setup_logging(settings.log_level)
    return create_app(
        settings,
        prepared=os.environ.get(PREPARED_ENV) == "1",
        metrics_dir=os.environ.get(MULTIPROC_ENV) or None,
    )
