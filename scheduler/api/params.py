"""Parsing of query and path values into domain values, with field errors in one style."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from scheduler.booking.errors import FieldError, ValidationFailed


def parse_date(
    field: str, value: str | None, default: date | None = None, *, earliest: date = date(2000, 1, 1)
) -> date:
    if value is None or value == "":
        if default is None:
            raise ValidationFailed(FieldError(field, "required"))
        return default
    try:
        if len(value) != 10:
            raise ValueError(value)
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(FieldError(field, "date")) from None
    if not earliest <= parsed <= date(2999, 12, 31):
        raise ValidationFailed(FieldError(field, "out_of_range"))
    return parsed


def parse_moment(field: str, value: str | None) -> datetime:
    """An ISO 8601 date-time that must carry an offset (a naive time is an error)."""
    if value is None or value == "":
        raise ValidationFailed(FieldError(field, "required"))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(FieldError(field, "datetime")) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationFailed(FieldError(field, "naive_datetime"))
    if abs(parsed.utcoffset() or timedelta(0)) > timedelta(hours=18):
        raise ValidationFailed(FieldError(field, "datetime"))
    return parsed


def parse_int(field: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ValidationFailed(FieldError(field, "integer", min=low, max=high)) from None
    if not low <= parsed <= high:
        raise ValidationFailed(FieldError(field, "integer", min=low, max=high))
    return parsed
