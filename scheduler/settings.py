"""Service settings: one frozen msgspec Struct read from ``SCHEDULER_*`` environment variables.

Only ``scheduler.app`` and ``scheduler.cli`` read the environment; everything else receives the
values it needs as arguments.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from scheduler.booking.addresses import addr_spec

PREFIX = "SCHEDULER_"


RATE_LIMITS = (
    "rate_limit_holds_per_address",
    "rate_limit_holds_per_person",
    "rate_limit_token_failures_per_address",
)
_RATE = re.compile(r"(\d{1,9})\s*/\s*(\d{1,9})\s*([smh]?)")


class SettingsError(ValueError):
    """A ``SCHEDULER_*`` variable has a value the service cannot use."""


class SmtpTls(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "sqlite+aiosqlite:///./scheduler.db"
    redis_url: str | None = None
    secret_key: str | None = None
    base_url: str = "http://127.0.0.1:8000"
    hold_seconds: int = 600
    horizon_days: int = 120
    retention_days: int = 14
    offer_hours: int = 24  # how long a waiting-list offer waits for its answer
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_tls: SmtpTls = SmtpTls.NONE
    mail_from: str = "Terminvergabe <termine@localhost>"
    mail_dir: str = "./mail"
    # how long a sender owns the messages it claimed; a sender that died is taken over after it
    outbox_lease_seconds: int = 120
    rate_limits: bool = True
    # abuse limits of anonymous routes: (attempts, seconds); SCHEDULER_RATE_LIMIT_*="30/60"
    rate_limit_holds_per_address: tuple[int, int] = (30, 60)
    rate_limit_holds_per_person: tuple[int, int] = (10, 600)
    rate_limit_token_failures_per_address: tuple[int, int] = (20, 600)
    log_level: str = "INFO"
    clock_offset_seconds: int = 0
    max_body_bytes: int = 1024 * 1024
    # Test-only: switch off the Lua seat check and the conditional SQL update, so a race test's
    # control run can show that it is able to see an overbooking. Never set it in production.
    unsafe_disable_guards: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``SCHEDULER_*`` variables; unknown variables are an error."""
        known = {f.encode_name for f in msgspec.structs.fields(cls)}
        raw: dict[str, object] = {}
        unknown: list[str] = []
        for key, value in env.items():
            if not key.startswith(PREFIX) or key == "SCHEDULER_TEST_DATABASE_URL":
                continue
            name = key[len(PREFIX) :].lower()
            if name not in known:
                unknown.append(key)
                continue
            raw[name] = value
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name in ("rate_limits", "unsafe_disable_guards"):
            if name in raw:
                raw[name] = _parse_bool(PREFIX + name.upper(), str(raw[name]))
        for name in RATE_LIMITS:
            if name in raw:
                raw[name] = _parse_rate(PREFIX + name.upper(), str(raw[name]))
        try:
            settings = msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_explain(str(exc))) from None
        settings.check()
        return settings

    def check(self) -> None:
        def positive(name: str, value: int, upper: int) -> None:
            if not 0 < value <= upper:
                raise SettingsError(f"{PREFIX}{name.upper()} must be between 1 and {upper}")

        positive("hold_seconds", self.hold_seconds, 86_400)
        positive("horizon_days", self.horizon_days, 1_000)
        positive("retention_days", self.retention_days, 3_650)
        positive("offer_hours", self.offer_hours, 720)
        positive("max_body_bytes", self.max_body_bytes, 100 * 1024 * 1024)
        if not 10 <= self.outbox_lease_seconds <= 3_600:
            raise SettingsError(f"{PREFIX}OUTBOX_LEASE_SECONDS must be between 10 and 3600")
        for name in RATE_LIMITS:
            count, seconds = getattr(self, name)
            if not (0 < count <= 1_000_000 and 0 < seconds <= 86_400):
                raise SettingsError(
                    f"{PREFIX}{name.upper()} must be COUNT/SECONDS with a count of 1 to "
                    "1000000 and a window of 1 s to 24 h"
                )
        scheme = self.database_url.split("://", 1)[0]
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL must start with sqlite+aiosqlite:// or "
                f"postgresql+asyncpg://, not {scheme}://"
            )
        if self.redis_url is not None:
            _check_redis_url(self.redis_url)
        base = urlsplit(self.base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise SettingsError(
                f"{PREFIX}BASE_URL must be an http(s) URL, e.g. https://termine.example.de"
            )
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise SettingsError(f"{PREFIX}SECRET_KEY must be at least 32 characters long")
        if self.smtp_port is not None and not 0 < self.smtp_port < 65536:
            raise SettingsError(f"{PREFIX}SMTP_PORT must be a TCP port (1-65535)")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        try:
            addr_spec(parseaddr(self.mail_from)[1])
        except ValueError:
            raise SettingsError(
                f"{PREFIX}MAIL_FROM must be an address, e.g. "
                "'Terminvergabe <termine@stadt.example>'"
            ) from None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite URL (None for PostgreSQL or in-memory SQLite)."""
        if not self.is_sqlite:
            return None
        # sqlite+aiosqlite:// (no path at all) is SQLAlchemy's in-memory database
        path = self.database_url.partition(":///")[2].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    def with_secret(self) -> Settings:
        """Settings with a secret key: the configured one, else one kept next to the database.

        The generated secret is written once to ``scheduler.secret`` beside the SQLite file (or in
        the working directory) with mode 0600, so restarts keep manage links valid.
        """
        if self.secret_key is not None:
            return self
        db = self.sqlite_path
        folder = db.parent if db is not None else Path()
        path = folder / "scheduler.secret"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process starting at the same moment won
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(48) + "\n")
        secret = path.read_text().strip()
        if len(secret) < 32:
            # An empty or truncated file must not silently become a guessable HMAC key.
            raise SettingsError(
                f"{path} holds no usable secret (fewer than 32 characters): delete the file "
                f"or set {PREFIX}SECRET_KEY"
            )
        return msgspec.structs.replace(self, secret_key=secret)

    def safe_repr(self) -> dict[str, object]:
        """The settings with secrets masked, for logs and ``scheduler config``."""
        out = msgspec.structs.asdict(self)
        for name in ("secret_key", "smtp_password"):
            if out[name]:
                out[name] = "***"
        for name in ("database_url", "redis_url"):
            value = out[name]
            if isinstance(value, str) and "@" in value:
                parts = urlsplit(value)
                if parts.password:
                    out[name] = value.replace(f":{parts.password}@", ":***@")
        return out


def _check_redis_url(url: str) -> None:
    """``redis://``, ``rediss://``, ``unix://``; ``redis+cluster://`` with one or more
    ``host:port`` seed nodes; ``redis+sentinel://`` with one or more sentinels and the
    master's name as the path."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel"):
        raise SettingsError(
            f"{PREFIX}REDIS_URL must be a redis://, rediss://, unix://, redis+cluster:// or "
            "redis+sentinel:// URL"
        )
    if parts.scheme not in ("redis+cluster", "redis+sentinel"):
        return
    hosts = [h.strip() for h in parts.netloc.rpartition("@")[2].split(",") if h.strip()]
    for host in hosts:
        port = host.rpartition("]")[2] if host.startswith("[") else host
        port = port.rpartition(":")[2] if port.count(":") == 1 else ""
        if host.count(":") > 1 and not host.startswith("["):
            port = ""  # a bare IPv6 address: the default port
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise SettingsError(f"{PREFIX}REDIS_URL: not a host:port: {host!r}")
    if not hosts:
        raise SettingsError(f"{PREFIX}REDIS_URL: {parts.scheme}:// needs at least one host:port")
    path = parts.path.strip("/")
    if parts.scheme == "redis+cluster" and path not in ("", "0"):
        raise SettingsError(f"{PREFIX}REDIS_URL: Redis Cluster has database 0 only")
    if parts.scheme == "redis+sentinel":
        name, _, db = path.partition("/")
        if not name or (db and not db.isdigit()):
            raise SettingsError(
                f"{PREFIX}REDIS_URL: redis+sentinel://host:port[,host:port]/MASTER-NAME[/DB]"
            )


def _parse_rate(name: str, value: str) -> tuple[int, int]:
    """``30/60`` (30 per 60 seconds); the window may carry a unit: ``10/10m``, ``100/1h``."""
    match = _RATE.fullmatch(value.strip().lower())
    if match is None:
        raise SettingsError(f"{name} must be COUNT/SECONDS, e.g. 30/60 or 10/10m, not {value!r}")
    count, amount, unit = match.groups()
    return int(count), int(amount) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be on or off, not {value!r}")


def _explain(message: str) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.hold_seconds`"
    if " - at `$." in message:
        what, where = message.split(" - at `$.", 1)
        field = where.rstrip("`").split(".")[0].split("[")[0]
        return f"{PREFIX}{field.upper()}: {what.replace('`', '')}"
    return message
