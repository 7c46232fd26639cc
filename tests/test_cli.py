"""The ``scheduler`` command as a real subprocess: keys, seed, migrate and bad settings.

Every run gets a minimal environment (no SCHEDULER_* from the caller) and works in ``tmp_path``
on a SQLite file there; without SCHEDULER_REDIS_URL, ``seed`` starts a throw-away Redis itself.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.resources import demo_seed
from tests.serverproc import minimal_env

KEY = re.compile(r"sk_(agent|staff|admin)_[A-Za-z0-9_-]{43}")


def scheduler(
    cwd: Path, *args: str, env: dict[str, str | None] | None = None, db: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``scheduler ARGS`` in ``cwd``; the database is ``db`` (default: cwd/cli.db)."""
    database = db if db is not None else cwd / "cli.db"
    overrides: dict[str, str | None] = {"SCHEDULER_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    overrides.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=cwd,
        env=minimal_env(overrides),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the demo municipality loaded once by ``scheduler seed``; tests copy it."""
    folder = tmp_path_factory.mktemp("seeded")
    ok(scheduler(folder, "seed", str(demo_seed().resolve())))
    return folder / "cli.db"


@pytest.fixture
def seeded(seeded_template: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded database in ``tmp_path`` (as ``cli.db``)."""
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{seeded_template}{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / f"cli.db{suffix}")
    return tmp_path / "cli.db"


def test_keys_create_prints_only_the_key(tmp_path: Path) -> None:
    result = ok(scheduler(tmp_path, "keys", "create", "--role", "agent", "--name", "Callcenter"))
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    secret = lines[0]
    assert KEY.fullmatch(secret), secret
    assert secret.startswith("sk_agent_")
    assert secret not in result.stderr
    # it was stored (hashed) in the database given by SCHEDULER_DATABASE_URL
    rows = query(tmp_path / "cli.db", "SELECT role, name, key_hash FROM api_keys")
    assert rows == [("agent", "Callcenter", hashlib.sha256(secret.encode()).hexdigest())]


def test_keys_list_shows_ids_and_roles_never_secrets(tmp_path: Path) -> None:
    agent = ok(scheduler(tmp_path, "keys", "create", "--role", "agent", "--name", "Anna")).stdout
    admin = ok(scheduler(tmp_path, "keys", "create", "--role", "admin", "--name", "Ida")).stdout
    listing = ok(scheduler(tmp_path, "keys", "list"))
    ids = dict(query(tmp_path / "cli.db", "SELECT name, id FROM api_keys"))
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "STATUS", "CREATED", "CALENDARS", "NAME"]
    assert len(lines) == 3
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[ids["Anna"]][1:3] == ["agent", "active"]
    assert rows[ids["Anna"]][-1] == "Anna"
    assert rows[ids["Ida"]][1:3] == ["admin", "active"]
    for secret in (agent.strip(), admin.strip()):
        assert secret not in listing.stdout + listing.stderr
        assert hashlib.sha256(secret.encode()).hexdigest() not in listing.stdout
    assert "sk_" not in listing.stdout


def test_keys_revoke(tmp_path: Path) -> None:
    ok(scheduler(tmp_path, "keys", "create", "--role", "agent", "--name", "Gone"))
    ok(scheduler(tmp_path, "keys", "create", "--role", "agent", "--name", "Stays"))
    ids = dict(query(tmp_path / "cli.db", "SELECT name, id FROM api_keys"))
    revoked = ok(scheduler(tmp_path, "keys", "revoke", ids["Gone"]))
    assert revoked.stdout == ""
    assert ids["Gone"] in revoked.stderr
    lines = ok(scheduler(tmp_path, "keys", "list")).stdout.splitlines()[1:]
    status = {line.split()[0]: line.split()[2] for line in lines}
    assert status == {ids["Gone"]: "revoked", ids["Stays"]: "active"}
    (revoked_at,) = query(
        tmp_path / "cli.db", f"SELECT revoked_at FROM api_keys WHERE id = '{ids['Gone']}'"
    )
    assert revoked_at[0] is not None
    # revoking again, or an id that does not exist: "not found", exit 1
    for key_id in (ids["Gone"], "nosuchkey"):
        again = scheduler(tmp_path, "keys", "revoke", key_id)
        assert again.returncode == 1
        assert f"not found: {key_id}" in again.stderr
        assert "Traceback" not in again.stderr


def test_staff_key_needs_a_calendar(tmp_path: Path) -> None:
    result = scheduler(tmp_path, "keys", "create", "--role", "staff", "--name", "Schalter")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "calendar_ids" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("scheduler: ")
    assert "Traceback" not in result.stderr
    assert query(tmp_path / "cli.db", "SELECT count(*) FROM api_keys") == [(0,)]


def test_staff_key_with_calendars(tmp_path: Path, seeded: Path) -> None:
    result = ok(
        scheduler(
            tmp_path,
            "keys", "create", "--role", "staff", "--name", "Schalter",
            "--calendar", "schalter-1", "--calendar", "schalter-2",
        )
    )  # fmt: skip
    assert result.stdout.startswith("sk_staff_")
    assert len(result.stdout.splitlines()) == 1
    (line,) = ok(scheduler(tmp_path, "keys", "list")).stdout.splitlines()[1:]
    assert "schalter-1,schalter-2" in line.split()
    unknown = scheduler(
        tmp_path, "keys", "create", "--role", "staff", "--name", "X", "--calendar", "mond-1"
    )
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert "mond-1" in unknown.stderr


def test_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    result = scheduler(tmp_path, "keys", "create", "--role", "root", "--name", "X")
    assert result.returncode == 2
    assert "--role" in result.stderr
    assert "agent" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cli.db").exists()


def test_default_database_is_in_the_working_directory(tmp_path: Path) -> None:
    result = ok(
        scheduler(
            tmp_path, "keys", "create", "--role", "admin", "--name", "X",
            env={"SCHEDULER_DATABASE_URL": None},
        )
    )  # fmt: skip
    assert (tmp_path / "scheduler.db").is_file()
    assert not (tmp_path / "cli.db").exists()
    (key_hash,) = query(tmp_path / "scheduler.db", "SELECT key_hash FROM api_keys")[0]
    assert key_hash == hashlib.sha256(result.stdout.strip().encode()).hexdigest()


CONFIG = {
    "locations": "*",
    "calendars": "*",
    "services": "*",
    # surrogate integer ids may be given anew; the rules themselves must stay the same
    "opening_rules": 'calendar_id, weekday, start, "end", valid_from, valid_to',
    "closures": "location_id, calendar_id, starts_at, ends_at, reason",
    # a campaign's window is relative to the load ("now", "+2d")
    "campaigns": "id, location_id, name, places",
}


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    out = {t: sorted(query(db, f"SELECT {cols} FROM {t}"), key=repr) for t, cols in CONFIG.items()}
    out["slots"] = query(db, "SELECT count(*), sum(capacity), min(starts_at) FROM slots")
    out["api_keys"] = query(db, "SELECT count(*) FROM api_keys")
    return out


def test_seed_loads_the_demo_and_twice_changes_nothing(tmp_path: Path) -> None:
    seed = str(demo_seed().resolve())
    first = ok(scheduler(tmp_path, "seed", seed))
    assert first.stdout == ""
    assert f"loaded {seed}" in first.stderr
    db = tmp_path / "cli.db"
    services = {row[0] for row in query(db, "SELECT id FROM services")}
    assert {"hund-anmelden", "personalausweis-beantragen"} <= services
    assert query(db, "SELECT count(*) FROM slots")[0][0] > 1000
    before = snapshot(db)
    ok(scheduler(tmp_path, "seed", seed))
    after = snapshot(db)
    for table in before:
        assert after[table] == before[table], table


def test_seed_of_a_broken_file_names_field_and_line(tmp_path: Path) -> None:
    text = demo_seed().read_text()
    broken = text.replace("slot_minutes = 15\n", 'slot_minutes = "fifteen"\n', 1)
    assert broken != text
    line = broken.splitlines().index('slot_minutes = "fifteen"') + 1
    path = tmp_path / "kaputt.toml"
    path.write_text(broken)
    result = scheduler(tmp_path, "seed", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("scheduler: ")
    assert "slot_minutes" in message
    assert f"line {line}" in message
    assert "kaputt.toml" in message
    assert not (tmp_path / "cli.db").exists()  # checked before touching the database


def test_seed_of_a_missing_or_invalid_file(tmp_path: Path) -> None:
    missing = scheduler(tmp_path, "seed", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "nope.toml" in missing.stderr
    (tmp_path / "bad.toml").write_text("[municipality\nname = 1\n")
    invalid = scheduler(tmp_path, "seed", "bad.toml")
    assert invalid.returncode == 2
    assert "TOML" in invalid.stderr
    assert "Traceback" not in missing.stderr + invalid.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SCHEDULER_HOLD_SECONDS", "abc", "SCHEDULER_HOLD_SECONDS"),
        ("SCHEDULER_HOLD_SECONDS", "0", "SCHEDULER_HOLD_SECONDS"),
        ("SCHEDULER_RATE_LIMITS", "maybe", "SCHEDULER_RATE_LIMITS"),
        ("SCHEDULER_DATABASE_URL", "mysql://db/x", "SCHEDULER_DATABASE_URL"),
        ("SCHEDULER_HOLDSECONDS", "60", "unknown setting(s): SCHEDULER_HOLDSECONDS"),
    ],
)
def test_bad_settings_exit_2_with_a_clear_message(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = scheduler(tmp_path, "migrate", env={variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith("scheduler: ")
    assert expected in message
    assert not list(tmp_path.iterdir())  # nothing was created


def test_migrate(tmp_path: Path) -> None:
    first = ok(scheduler(tmp_path, "migrate"))
    assert first.stdout == ""
    db = tmp_path / "cli.db"
    (version,) = query(db, "SELECT version_num FROM alembic_version")
    assert version[0]
    tables = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_keys", "bookings", "slots", "services"} <= tables
    ok(scheduler(tmp_path, "migrate"))  # again: nothing to do, still fine
    assert query(db, "SELECT version_num FROM alembic_version") == [version]


def test_serve_needs_at_least_one_worker(tmp_path: Path) -> None:
    result = scheduler(tmp_path, "serve", "--workers", "0")
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert not list(tmp_path.iterdir())


def test_feeds_create_list_revoke(tmp_path: Path, seeded: Path) -> None:
    created = ok(scheduler(tmp_path, "feeds", "create", "--calendar", "impflinie-1"))
    token = created.stdout.strip()
    assert re.fullmatch(r"ft_[A-Za-z0-9_-]{43}", token), created.stdout
    stored = query(seeded, "SELECT id, token_hash FROM feed_tokens")
    assert len(stored) == 1
    assert token not in str(stored)
    listing = ok(scheduler(tmp_path, "feeds", "list"))
    assert str(stored[0][0]) in listing.stdout
    assert token not in listing.stdout + listing.stderr
    ok(scheduler(tmp_path, "feeds", "revoke", str(stored[0][0])))
    assert "revoked" in ok(scheduler(tmp_path, "feeds", "list")).stdout
    unknown = scheduler(tmp_path, "feeds", "create", "--calendar", "nope")
    assert unknown.returncode == 2


def test_closures_import_from_an_ics_file(tmp_path: Path, seeded: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "holidays_rrule_exdate.ics"
    first = ok(scheduler(tmp_path, "closures", "import", str(fixture), "--calendar", "schalter-1"))
    added = int(re.search(r"closures added: (\d+)", first.stdout).group(1))  # type: ignore[union-attr]
    assert added > 0
    again = ok(scheduler(tmp_path, "closures", "import", str(fixture), "--calendar", "schalter-1"))
    assert "closures added: 0" in again.stdout
    rows = query(seeded, "SELECT count(*) FROM closures WHERE source = 'import'")
    assert rows[0][0] == added
    broken = tmp_path / "broken.ics"
    broken.write_bytes(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n")
    failed = scheduler(tmp_path, "closures", "import", str(broken), "--calendar", "schalter-1")
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
