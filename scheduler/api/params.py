"""Parsing of query and path values into domain values, with field errors in one style; and
``screened``, the ``before_request`` hook of every controller, which keeps from the handlers
what none of them should see:

- a NUL character in a path, query or body value (PostgreSQL can neither store nor compare it:
  a 500 there, and never meant by anyone);
- a JSON body that is no JSON (400), JSON sent as another media type (415: a form or
  ``text/plain`` post from another site must not book), or JSON of other types than its schema
  names (422; Litestar alone converts leniently: ``"2"`` for 2, ``0`` for false). An empty body
  is "body: required" (422).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.openapi.spec import OpenAPIFormat, Schema

from scheduler.booking.errors import FieldError, ValidationFailed

# The OpenAPI formats of the strings parsed here (``schema_extra`` of their parameters); they are
# parsed here rather than by Litestar so that every error names its field in one style. An empty
# query value is the same as none (the default), as HTML forms send it.
DATE_FORMAT = {"format": "date"}
MOMENT_FORMAT = {"format": "date-time"}
DATE_QUERY = {"any_of": [Schema(format=OpenAPIFormat.DATE), Schema(max_length=0)]}
MOMENT_QUERY = {"any_of": [Schema(format=OpenAPIFormat.DATE_TIME), Schema(max_length=0)]}
EMAIL_OR_EMPTY = {"any_of": [Schema(format=OpenAPIFormat.EMAIL), Schema(max_length=0)]}


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


def _with_nul(value: Any, path: str) -> str | None:
    """The path of the first string in ``value`` that holds a NUL character."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{index}]", item) for index, item in enumerate(value))  # type: ignore[assignment]
    else:
        return None
    for key, item in items:
        where = f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else key
        found = _with_nul(key, where) or _with_nul(item, where)
        if found is not None:
            return found
    return None


def _is_json(media_type: str) -> bool:
    return media_type in ("", "application/json") or media_type.endswith("+json")


async def screened(request: Request[Any, Any, Any]) -> None:
    """The ``before_request`` hook of every controller (see the module docstring)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValidationFailed(FieldError(name, "control_character"))
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise ValidationFailed(FieldError(name.replace("\x00", ""), "control_character"))
    field = request.route_handler.parsed_data_field
    if field is None:
        return
    body = await request.body()
    if not body.strip():
        raise ValidationFailed(FieldError("body", "required"))
    invalid: msgspec.ValidationError | None = None
    try:
        msgspec.json.decode(body, type=field.annotation)
    except msgspec.ValidationError as exc:
        invalid = exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ClientException("The body is not JSON.") from None
    if not _is_json(request.content_type[0]):
        raise ClientException("The body must be sent as application/json.", status_code=415)
    if invalid is not None:
        raise ValidationException(
            "Validation failed",
            extra=[{"message": str(invalid), "key": "data", "source": "body"}],
        )
    # inside JSON strings a NUL can only be the escape \u0000 (a raw one is malformed JSON)
    if b"\\u0000" in body and (where := _with_nul(msgspec.json.decode(body), "")) is not None:
        raise ValidationFailed(FieldError(where or "body", "control_character"))
