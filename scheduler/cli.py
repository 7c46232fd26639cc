"""The ``scheduler`` command.

scheduler serve [--demo] [--host H] [--port P] [--workers N]
scheduler migrate
scheduler seed FILE
scheduler keys create --role agent|staff|admin --name NAME [--calendar ID ...]
scheduler keys list
scheduler keys revoke ID
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import msgspec

from scheduler.booking import apikeys
from scheduler.booking.errors import DomainError, FieldError, NotFound, ValidationFailed
from scheduler.booking.seed import SeedError, apply_seed, load_seed_file
from scheduler.clock import SystemClock
from scheduler.logs import setup_logging
from scheduler.resources import demo_seed
from scheduler.settings import Settings, SettingsError


class CliError(Exception):
    pass


def _clock(settings: Settings) -> SystemClock:
    return SystemClock(timedelta(seconds=settings.clock_offset_seconds))


async def _prepare(settings: Settings, redis_url: str, seed_file: Path | None) -> None:
    """Migrate, load a seed file (if any), materialize slots and build the Redis counters."""
    from scheduler.booking.core import Core
    from scheduler.booking.db import make_engine, make_sessionmaker, migrate
    from scheduler.redisconn import connect

    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    redis = connect(redis_url)
    try:
        sessions = make_sessionmaker(engine)
        clock = _clock(settings)
        if seed_file is not None:
            seed = load_seed_file(seed_file)
            async with sessions() as session, session.begin():
                await apply_seed(session, seed, clock.now())
        core = Core(
            engine=engine,
            sessions=sessions,
            redis=redis,
            clock=clock,
            secret_key=settings.secret_key or "",
            hold_seconds=settings.hold_seconds,
            horizon_days=settings.horizon_days,
        )
        await core.refresh_catalog(force=True)
        await core.materialize()
    finally:
        await redis.aclose()
        await engine.dispose()


BASE_URL_ENV = "SCHEDULER_BASE_URL"


def listening_url(host: str, port: int) -> str:
    """The URL of a server on ``host:port``, as links in messages name it when
    ``SCHEDULER_BASE_URL`` is not set (a wildcard address names the loopback one)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    # Metrics: one process keeps its own; with several workers each writes its values to files
    # in a fresh private folder, which /metrics of any worker adds up. prometheus-client picks
    # its mode when it is first imported (below), so an inherited folder is dropped first.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)
    import uvicorn

    from scheduler.app import PREPARED_ENV
    from scheduler.metrics import MULTIPROC_ENV
    from scheduler.redisproc import RedisServer

    settings = settings.with_secret()
    if BASE_URL_ENV not in os.environ:
        # links in messages and pages point where this server listens (the workers read it)
        os.environ[BASE_URL_ENV] = listening_url(args.host, args.port)
        settings = msgspec.structs.replace(settings, base_url=os.environ[BASE_URL_ENV])
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default
    # action would then end this process before the ``finally`` below stops the private Redis
    # (left running, orphaned). Treat SIGTERM as SIGINT, which uvicorn.run() catches.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    private: RedisServer | None = None
    metrics_dir: str | None = None
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            private = RedisServer()
            private.start()
            redis_url = private.url
            os.environ["SCHEDULER_REDIS_URL"] = redis_url
        asyncio.run(_prepare(settings, redis_url, demo_seed() if args.demo else None))
        os.environ[PREPARED_ENV] = "1"
        if args.workers > 1:
            metrics_dir = tempfile.mkdtemp(prefix="scheduler-metrics-")  # mode 0700
            os.environ[MULTIPROC_ENV] = metrics_dir
        where = f"http://{args.host}:{args.port}"
        print(
            f"scheduler listens on {where}: booking {where}/, hotline {where}/agent, staff "
            f"{where}/staff, API docs {where}/schema",
            file=sys.stderr,
        )
        uvicorn.run(
            "scheduler.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers if args.workers > 1 else None,
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=10,
            backlog=4096,
        )
    finally:
        if private is not None:
            private.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from scheduler.booking.db import migrate_sync

    migrate_sync(settings.database_url)
    print("database is at the newest schema", file=sys.stderr)
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.redisproc import RedisServer

    path = Path(args.file)
    load_seed_file(path)  # validate before touching anything
    if settings.redis_url is not None:
        asyncio.run(_prepare(settings, settings.redis_url, path))
    else:
        # No shared Redis configured: counters are rebuilt by the running service itself
        # (it watches the configuration version); a throw-away Redis serves this run.
        with RedisServer() as private:
            asyncio.run(_prepare(settings, private.url, path))
    print(f"loaded {path}", file=sys.stderr)
    return 0


async def _with_session(settings: Settings, work):  # type: ignore[no-untyped-def]
    from scheduler.booking.db import make_engine, make_sessionmaker, migrate

    await migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from scheduler.booking import models as m

    now = _clock(settings).now()
    if args.keys_command == "create":

        async def create(session):  # type: ignore[no-untyped-def]
            known = set(await session.scalars(select(m.Calendar.id)))
            _, secret = await apikeys.create_key(
                session,
                role=args.role,
                name=args.name,
                calendar_ids=args.calendar or [],
                known_calendars=known,
                now=now,
            )
            return secret

        print(asyncio.run(_with_session(settings, create)))
        return 0
    if args.keys_command == "list":
        rows = asyncio.run(_with_session(settings, apikeys.list_keys))
        print(f"{'ID':<14}{'ROLE':<8}{'STATUS':<10}{'CREATED':<22}{'CALENDARS':<30}NAME")
        for row in rows:
            status = "revoked" if row.revoked_at else "active"
            print(
                f"{row.id:<14}{row.role:<8}{status:<10}"
                f"{row.created_at:%Y-%m-%d %H:%M}Z{'':<5}{','.join(row.calendar_ids) or '-':<30}"
                f"{row.name}"
            )
        return 0

    async def revoke(session):  # type: ignore[no-untyped-def]
        return await apikeys.revoke_key(session, args.id, now)

    asyncio.run(_with_session(settings, revoke))
    print(f"revoked {args.id}", file=sys.stderr)
    return 0


def cmd_feeds(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from scheduler.booking import feeds
    from scheduler.booking import models as m

    now = _clock(settings).now()
    if args.feeds_command == "create":

        async def create(session):  # type: ignore[no-untyped-def]
            known = set(await session.scalars(select(m.Calendar.id)))
            _, token = await feeds.create_token(session, args.calendar, args.name, known, now)
            return token

        print(asyncio.run(_with_session(settings, create)))
        return 0
    if args.feeds_command == "list":
        rows = asyncio.run(_with_session(settings, feeds.list_tokens))
        print(f"{'ID':<14}{'CALENDAR':<24}{'STATUS':<10}{'CREATED':<22}NAME")
        for row in rows:
            status = "revoked" if row.revoked_at else "active"
            print(
                f"{row.id:<14}{row.calendar_id:<24}{status:<10}"
                f"{row.created_at:%Y-%m-%d %H:%M}Z{'':<5}{row.name}"
            )
        return 0

    async def revoke(session):  # type: ignore[no-untyped-def]
        return await feeds.revoke_token(session, args.id, now)

    asyncio.run(_with_session(settings, revoke))
    print(f"revoked {args.id}", file=sys.stderr)
    return 0


def cmd_closures(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.booking.closures import import_closures
    from scheduler.booking.db import make_engine, make_sessionmaker, migrate

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read the file ({exc.strerror})") from None

    async def run():  # type: ignore[no-untyped-def]
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            return await import_closures(
                make_sessionmaker(engine), args.calendar, data, _clock(settings).now(),
                settings.horizon_days,
            )  # fmt: skip
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    print(f"closures added: {report.added}, already known: {report.already_known}")
    if report.affected:
        print(f"bookings inside the new closures ({len(report.affected)}), to move or cancel:")
        for item in report.affected:
            print(f"  {item.reference[:4]}-{item.reference[4:]}  {item.start:%Y-%m-%d %H:%M}Z  "
                  f"{item.status}")  # fmt: skip
    else:
        print("no booking is affected")
    print("the running service picks the change up within a minute", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The scheduled jobs without HTTP: dispatch messages, sweep holds, reconcile counters,
    extend the horizon, erase old personal data. Stops on SIGTERM or SIGINT. With
    ``--metrics-port``, its own figures (messages sent, retried, failed) for Prometheus."""
    import signal

    # its own figures, never files of an API's multiprocess folder (chosen at first import)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)

    from scheduler.booking.core import Core
    from scheduler.booking.db import make_engine, make_sessionmaker, migrate
    from scheduler.jobs import make_dispatcher, start_jobs
    from scheduler.redisconn import connect

    settings = settings.with_secret()
    if settings.redis_url is None:
        raise CliError("scheduler worker needs SCHEDULER_REDIS_URL: the Redis the API uses")

    async def run() -> None:
        await migrate(settings.database_url)
        engine = make_engine(settings.database_url, pool_size=4)
        redis = connect(settings.redis_url or "")
        core = Core(
            engine=engine, sessions=make_sessionmaker(engine), redis=redis,
            clock=_clock(settings), secret_key=settings.secret_key or "",
            hold_seconds=settings.hold_seconds, horizon_days=settings.horizon_days,
            base_url=settings.base_url, retention_days=settings.retention_days,
            offer_hours=settings.offer_hours,
        )  # fmt: skip
        await core.refresh_catalog(force=True)
        await core.take_over_counters()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        dispatcher = make_dispatcher(core, settings)
        jobs = start_jobs(core, dispatcher)
        if args.metrics_port is not None:
            from prometheus_client import start_http_server

            try:
                start_http_server(args.metrics_port, addr=args.metrics_host)
            except OSError as exc:
                raise CliError(f"metrics port {args.metrics_port}: {exc.strerror}") from exc
        print("scheduler worker running", file=sys.stderr)
        try:
            await dispatcher.run_once()  # what fell due while no process ran goes out now
            await stop.wait()
        finally:
            jobs.shutdown(wait=False)
            await redis.aclose()
            await engine.dispose()

    asyncio.run(run())
    return 0


def cmd_notifications(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.booking import notifications

    now = _clock(settings).now()
    if args.notifications_command == "list":

        async def rows(session):  # type: ignore[no-untyped-def]
            return await notifications.list_notifications(session, args.status)

        print(f"{'ID':<8}{'KIND':<14}{'STATUS':<16}{'ATTEMPTS':<10}{'DUE':<20}{'BOOKING':<11}ERROR")
        for row, reference in asyncio.run(_with_session(settings, rows)):
            ref = f"{reference[:4]}-{reference[4:]}" if reference else "-"
            print(
                f"{row.id:<8}{row.kind:<14}{row.status:<16}{row.attempts:<10}"
                f"{row.due_at:%Y-%m-%d %H:%M}Z  {ref:<11}{row.last_error or ''}"
            )
        return 0

    async def retry(session):  # type: ignore[no-untyped-def]
        return await notifications.retry(session, args.id, now)

    asyncio.run(_with_session(settings, retry))
    print(f"message {args.id} will be sent again", file=sys.stderr)
    return 0


def cmd_privacy(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.booking.retention import erase_reference

    now = _clock(settings).now()

    async def erase(session):  # type: ignore[no-untyped-def]
        return await erase_reference(session, args.reference, now)

    asyncio.run(_with_session(settings, erase))
    print(f"personal data of {args.reference} erased", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.api.params import parse_date
    from scheduler.booking.catalog import load_catalog
    from scheduler.booking.stats import booking_stats, table

    first, last = parse_date("from", args.first), parse_date("to", args.last)

    async def figures(session):  # type: ignore[no-untyped-def]
        catalog = await load_catalog(session)
        return await booking_stats(session, catalog, first, last, args.service)

    print(table(asyncio.run(_with_session(settings, figures))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler",
        description="Appointment and slot booking for a municipality's digital town hall.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--demo", action="store_true", help="load the demo municipality")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    sub.add_parser("migrate", help="upgrade the database schema")
    seed = sub.add_parser("seed", help="load or update a set-up from a seed file")
    seed.add_argument("file")
    keys = sub.add_parser("keys", help="API keys for agents, staff and admins")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints only the key")
    create.add_argument("--role", required=True, choices=["agent", "staff", "admin"])
    create.add_argument("--name", required=True)
    create.add_argument("--calendar", action="append", help="calendar in scope (repeatable)")
    keys_sub.add_parser("list", help="list keys (never their secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    feeds = sub.add_parser("feeds", help="iCal feed tokens for staff calendars")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True)
    feed_create = feeds_sub.add_parser("create", help="create a feed token; prints only it")
    feed_create.add_argument("--calendar", required=True)
    feed_create.add_argument("--name", default="")
    feeds_sub.add_parser("list", help="list feed tokens (never the tokens)")
    feed_revoke = feeds_sub.add_parser("revoke", help="revoke a feed token")
    feed_revoke.add_argument("id")
    closures = sub.add_parser("closures", help="closures of calendars")
    closures_sub = closures.add_subparsers(dest="closures_command", required=True)
    closures_import = closures_sub.add_parser("import", help="import an .ics file as closures")
    closures_import.add_argument("file")
    closures_import.add_argument("--calendar", required=True)
    worker = sub.add_parser("worker", help="run the scheduled jobs (messages, sweeps) without HTTP")
    worker.add_argument(
        "--metrics-port", type=int, help="serve this process's Prometheus metrics on this port"
    )
    worker.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of the metrics port (127.0.0.1)"
    )
    notes = sub.add_parser("notifications", help="messages (outbox) and their outcome")
    notes_sub = notes.add_subparsers(dest="notifications_command", required=True)
    notes_list = notes_sub.add_parser("list", help="list messages, newest first")
    notes_list.add_argument("--status", help="e.g. failed, pending, sent, not_applicable")
    notes_retry = notes_sub.add_parser("retry", help="send a failed message again")
    notes_retry.add_argument("id", type=int)
    privacy = sub.add_parser("privacy", help="personal data")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    erase = privacy_sub.add_parser("erase", help="erase one booking's personal data now")
    erase.add_argument("--reference", required=True)
    stats = sub.add_parser("stats", help="bookings, no-shows and utilisation per week")
    stats.add_argument("--from", dest="first", required=True, help="first local date, YYYY-MM-DD")
    stats.add_argument("--to", dest="last", required=True, help="last local date (inclusive)")
    stats.add_argument("--service", help="only this service (and the calendars it books)")
    return parser


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "keys": cmd_keys,
    "feeds": cmd_feeds,
    "closures": cmd_closures,
    "worker": cmd_worker,
    "notifications": cmd_notifications,
    "privacy": cmd_privacy,
    "stats": cmd_stats,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        setup_logging(settings.log_level)
        if args.command == "serve" and args.workers < 1:
            raise CliError("--workers must be at least 1")
        return COMMANDS[args.command](args, settings)
    except (SettingsError, SeedError, CliError) as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return 2
    except ValidationFailed as exc:
        print("scheduler: " + "; ".join(_field(err) for err in exc.errors), file=sys.stderr)
        return 2
    except NotFound as exc:
        print(f"scheduler: not found: {exc.params.get('ident')}", file=sys.stderr)
        return 1
    except DomainError as exc:
        print(f"scheduler: {exc.code}", file=sys.stderr)
        return 1


def _field(err: FieldError) -> str:
    detail = ", ".join(f"{k}={v}" for k, v in err.params.items())
    return f"{err.field}: {err.message_key}" + (f" ({detail})" if detail else "")


if __name__ == "__main__":
    raise SystemExit(main())
