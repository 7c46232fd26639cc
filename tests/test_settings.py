"""Settings from ``SCHEDULER_*`` variables: defaults, one clear error per bad value, the demo
secret kept beside the database, and a printable form without secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scheduler.settings import Settings, SettingsError, SmtpTls

GOOD_SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters: the shortest allowed


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./scheduler.db"
    assert settings.redis_url is None
    assert settings.secret_key is None
    assert settings.base_url == "http://127.0.0.1:8000"
    assert (settings.hold_seconds, settings.horizon_days, settings.retention_days) == (600, 120, 14)
    assert settings.smtp_host is None
    assert settings.smtp_tls is SmtpTls.NONE
    assert settings.mail_dir == "./mail"
    assert settings.rate_limits is True
    assert settings.is_sqlite
    assert settings.sqlite_path == Path("scheduler.db")


def test_values_are_read_and_converted() -> None:
    settings = Settings.from_env(
        {
            "SCHEDULER_DATABASE_URL": "postgresql+asyncpg://app:pw@db:5432/termine",
            "SCHEDULER_REDIS_URL": "redis://redis:6379/0",
            "SCHEDULER_SECRET_KEY": GOOD_SECRET,
            "SCHEDULER_BASE_URL": "https://termine.example.de",
            "SCHEDULER_HOLD_SECONDS": "300",
            "SCHEDULER_HORIZON_DAYS": "60",
            "SCHEDULER_RETENTION_DAYS": "30",
            "SCHEDULER_SMTP_HOST": "mail.example.de",
            "SCHEDULER_SMTP_PORT": "587",
            "SCHEDULER_SMTP_TLS": "starttls",
            "SCHEDULER_RATE_LIMITS": "off",
            "SCHEDULER_TEST_DATABASE_URL": "postgresql+asyncpg://ignored",
            "HOME": "/home/someone",  # not ours: ignored
        }
    )
    assert settings.hold_seconds == 300
    assert isinstance(settings.hold_seconds, int)
    assert (settings.horizon_days, settings.retention_days) == (60, 30)
    assert settings.smtp_port == 587
    assert settings.smtp_tls is SmtpTls.STARTTLS
    assert settings.rate_limits is False
    assert not settings.is_sqlite
    assert settings.sqlite_path is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCHEDULER_HOLD_SECONDS", "ten"),
        ("SCHEDULER_HOLD_SECONDS", "1.5"),
        ("SCHEDULER_HOLD_SECONDS", "0"),
        ("SCHEDULER_HOLD_SECONDS", "86401"),
        ("SCHEDULER_HORIZON_DAYS", "-1"),
        ("SCHEDULER_RETENTION_DAYS", "3651"),
        ("SCHEDULER_MAX_BODY_BYTES", "0"),
        ("SCHEDULER_SMTP_PORT", "smtp"),
        ("SCHEDULER_SMTP_PORT", "70000"),
        ("SCHEDULER_SMTP_TLS", "ssl"),
        ("SCHEDULER_DATABASE_URL", "mysql://db/termine"),
        ("SCHEDULER_DATABASE_URL", "postgresql://db/termine"),
        ("SCHEDULER_DATABASE_URL", "sqlite:///scheduler.db"),
        ("SCHEDULER_REDIS_URL", "http://redis:6379"),
        ("SCHEDULER_SECRET_KEY", "short"),
        ("SCHEDULER_SECRET_KEY", GOOD_SECRET[:-1]),
        ("SCHEDULER_BASE_URL", "ftp://termine.example.de"),
        ("SCHEDULER_BASE_URL", "termine.example.de"),
        ("SCHEDULER_BASE_URL", "https://"),
        ("SCHEDULER_RATE_LIMITS", "maybe"),
        ("SCHEDULER_RATE_LIMITS", ""),
        ("SCHEDULER_LOG_LEVEL", "TRACE"),
        ("SCHEDULER_MAIL_FROM", "Terminvergabe"),
        ("SCHEDULER_MAIL_FROM", "Terminvergabe <termine..stadt@example.de>"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value)


def test_unknown_variables_are_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"SCHEDULER_FOO": "1", "SCHEDULER_HOLD_SECONDS": "60", "SCHEDULER_BAR": ""}
        )
    message = str(caught.value)
    assert "SCHEDULER_FOO" in message
    assert "SCHEDULER_BAR" in message
    assert "SCHEDULER_HOLD_SECONDS" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("on", True),
        ("off", False),
        ("ON", True),
        ("Off", False),
        ("1", True),
        ("0", False),
        ("true", True),
        ("no", False),
    ],
)
def test_rate_limits_on_and_off(value: str, expected: bool) -> None:
    assert Settings.from_env({"SCHEDULER_RATE_LIMITS": value}).rate_limits is expected


@pytest.mark.parametrize("value", ["none", "starttls", "tls"])
def test_smtp_tls_modes(value: str) -> None:
    assert Settings.from_env({"SCHEDULER_SMTP_TLS": value}).smtp_tls == value


def test_the_secret_is_generated_once_beside_the_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "data" / "scheduler.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db}")
    first = settings.with_secret()
    path = tmp_path / "data" / "scheduler.secret"
    assert path.is_file()
    assert first.secret_key is not None
    assert len(first.secret_key) >= 32
    assert path.read_text().strip() == first.secret_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.secret_key is None  # frozen: a new object, the old one unchanged

    again = settings.with_secret()
    assert again.secret_key == first.secret_key
    other = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'elsewhere' / 'x.db'}")
    assert other.with_secret().secret_key != first.secret_key


def test_a_configured_secret_writes_no_file(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'scheduler.db'}", secret_key=GOOD_SECRET
    )
    assert settings.with_secret() is settings
    assert not (tmp_path / "scheduler.secret").exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql+asyncpg://app@db/termine", "sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"],
)
def test_without_a_database_file_the_secret_goes_to_the_working_directory(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(database_url=url)
    assert settings.sqlite_path is None
    secret = settings.with_secret().secret_key
    assert secret is not None
    assert (tmp_path / "scheduler.secret").read_text().strip() == secret


@pytest.mark.parametrize("content", ["", "\n", "abc\n"])
def test_an_empty_or_truncated_secret_file_is_an_error(content: str, tmp_path: Path) -> None:
    (tmp_path / "scheduler.secret").write_text(content)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'scheduler.db'}")
    with pytest.raises(SettingsError, match=r"scheduler\.secret.*SCHEDULER_SECRET_KEY"):
        settings.with_secret()


def test_safe_repr_masks_secrets_and_url_passwords() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://app:pg-pass%40word@db:5432/termine",
        redis_url="rediss://default:redis-pass@redis:6380/0",
        secret_key="s" * 40,
        smtp_user="termine",
        smtp_password="smtp-pass",
    )
    shown = settings.safe_repr()
    text = repr(shown)
    for secret in ("pg-pass", "redis-pass", "s" * 40, "smtp-pass"):
        assert secret not in text
    assert shown["database_url"] == "postgresql+asyncpg://app:***@db:5432/termine"
    assert shown["redis_url"] == "rediss://default:***@redis:6380/0"
    assert shown["secret_key"] == "***"
    assert shown["smtp_password"] == "***"
    assert shown["smtp_user"] == "termine"
    assert shown["hold_seconds"] == 600
    assert settings.secret_key == "s" * 40  # masking does not touch the settings


def test_safe_repr_leaves_urls_without_passwords_alone() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://app@db/termine", redis_url="unix:///tmp/r.sock?db=0"
    )
    shown = settings.safe_repr()
    assert shown["database_url"] == "postgresql+asyncpg://app@db/termine"
    assert shown["redis_url"] == "unix:///tmp/r.sock?db=0"
    assert shown["secret_key"] is None
    assert shown["smtp_password"] is None
