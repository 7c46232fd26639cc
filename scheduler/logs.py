"""Logging: one JSON object per line when not on a terminal, plain text on one.

Log records never carry personal data or secrets: callers pass ids and outcomes only, and the
request log drops the query string (where ``token=`` would be).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {extra}" if extra else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # at DEBUG, database drivers log statements with their parameters (names, e-mail
    # addresses): they stay at WARNING whatever the level, as do the chatty ones
    for noisy in (
        "uvicorn.access",
        "apscheduler.executors.default",
        "apscheduler.scheduler",
        "alembic",
        "aiosqlite",
        "asyncpg",
        "sqlalchemy.engine",
        "sqlalchemy.pool",
        "aiosmtplib",
        "mail.log",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
