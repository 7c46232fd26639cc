"""Reading the pages' forms: text fields held to a length and free of control characters, dates
as people write them (``14.03.1948``) or as a date input sends them (``1948-03-14``), and the
person a booking form describes. Mistakes are :class:`ValidationFailed` with the field's name, so
the page can put the message next to it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from typing import Any

from scheduler.booking.bookings import BookingRequest, Person, validate_request
from scheduler.booking.errors import FieldError, ValidationFailed

GERMAN_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def field(form: Mapping[str, Any], name: str, max_length: int = 200) -> str:
    """A form field's text, stripped; '' when missing."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise ValidationFailed(FieldError(name, "text_characters"))
    value = value.strip()
    if len(value) > max_length:
        raise ValidationFailed(FieldError(name, "length", min=0, max=max_length))
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValidationFailed(FieldError(name, "text_characters"))
    return value


def parse_day(name: str, value: str) -> date:
    for pattern, order in ((GERMAN_DATE, (2, 1, 0)), (ISO_DATE, (0, 1, 2))):
        found = pattern.match(value)
        if found:
            parts = [int(found.group(i + 1)) for i in range(3)]
            year, month, day = (parts[i] for i in order)
            try:
                return date(year, month, day)
            except ValueError:
                break
    raise ValidationFailed(FieldError(name, "date"))


def person(form: Mapping[str, Any], *, eligibility: bool) -> Person:
    """The attendee of a booking form (``citizen.…`` fields). ``eligibility``: a campaign's
    form, which also asks for the birth date and the postcode. A missing name or contact is
    left to the booking's own validation (:func:`check_person`)."""
    errors: list[FieldError] = []
    values: dict[str, str] = {}
    for name, limit in (("name", 200), ("email", 254), ("phone", 32)):
        try:
            values[name] = field(form, f"citizen.{name}", limit)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    birth_date: date | None = None
    postcode: str | None = None
    if eligibility:
        raw = ""
        try:
            raw = field(form, "citizen.birth_date", 10)
            birth_date = parse_day("citizen.birth_date", raw) if raw else None
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        if not raw:
            errors.append(FieldError("citizen.birth_date", "required"))
        try:
            postcode = field(form, "citizen.postcode", 5) or None
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        if postcode is None or not re.fullmatch(r"\d{5}", postcode):
            errors.append(FieldError("citizen.postcode", "invalid"))
    found = Person(
        values.get("name", ""),
        values.get("email") or None,
        values.get("phone") or None,
        birth_date,
        postcode,
    )
    errors.extend(check_person(found))
    if errors:
        raise ValidationFailed(*_unique(errors))
    return found


def check_person(found: Person) -> list[FieldError]:
    """The booking's own checks of a person (name, e-mail or phone, their forms)."""
    try:
        validate_request(BookingRequest(citizen=found))
    except ValidationFailed as exc:
        return list(exc.errors)
    return []


def _unique(errors: list[FieldError]) -> list[FieldError]:
    """One message per field (the first)."""
    seen: set[str] = set()
    return [err for err in errors if not (err.field in seen or seen.add(err.field))]
