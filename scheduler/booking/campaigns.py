"""Campaign rules as data: the booking window, eligibility, and the dose interval of a series.

Checked when a hold is taken and again when it is confirmed (or booked in one step):

- **Window**: a campaign's services can be held and booked from ``opens_at`` (that very second is
  open) up to and including ``closes_at``; outside, :class:`WindowClosed` with ``opens_at``.
  Slots stay visible either way.
- **Eligibility**, judged on the local date of the (first) appointment: the citizen's name and
  birth date are required (and the postcode where the campaign lists postcodes) — a missing
  one is 422 ``validation_failed`` on that field, since the caller can fix it by asking; a
  person younger than ``min_age`` on that day is :class:`NotEligible` ``too_young`` (with
  ``min_age`` and ``eligible_from``, the birthday of ``min_age``), a postcode not in the list
  ``not_resident``.
- **Age**: completed years, a birthday counting from its own day: someone turns 76 on their
  76th birthday and is eligible for an appointment on that day. Someone born on 29 February
  turns a year older on 1 March in years without that date (so is eligible from 1 March).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.booking.catalog import CampaignInfo, Catalog
from scheduler.booking.errors import FieldError, NotEligible, ValidationFailed, WindowClosed


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day``. A 29 February birthday comes on 1 March in common years."""
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (1 if before_birthday else 0)


def birthday(birth_date: date, age: int) -> date:
    """The day someone turns ``age`` (1 March for a 29 February birthday in a common year)."""
    year = birth_date.year + age
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def campaign_of(catalog: Catalog, service_ids: Iterable[str]) -> CampaignInfo | None:
    """The campaign the services belong to (None for ordinary services)."""
    found = {
        s.campaign_id
        for s in (catalog.services.get(i) for i in service_ids)
        if s is not None and s.campaign_id
    }
    if len(found) > 1:
        raise ValidationFailed(FieldError("service_ids", "one_campaign"))
    return catalog.campaigns.get(found.pop()) if found else None


def check_window(campaign: CampaignInfo, now: datetime, tz: ZoneInfo) -> None:
    """Open from ``opens_at`` (inclusive) to ``closes_at`` (inclusive); the error carries both
    in the location's zone."""
    closes_at = campaign.closes_at
    if now < campaign.opens_at or (closes_at is not None and now > closes_at):
        raise WindowClosed(
            campaign.opens_at.astimezone(tz), closes_at.astimezone(tz) if closes_at else None
        )


def check_person(campaign: CampaignInfo, citizen: object | None, day: date) -> None:
    """``citizen``: a ``Person`` (name, birth_date, postcode); ``day``: the local date of the
    appointment the age is judged on."""
    if citizen is None:
        raise ValidationFailed(FieldError("citizen", "required"))
    name = getattr(citizen, "name", None)
    birth_date: date | None = getattr(citizen, "birth_date", None)
    postcode: str | None = getattr(citizen, "postcode", None)
    errors = []
    if not name or not str(name).strip():
        errors.append(FieldError("citizen.name", "required"))
    if campaign.min_age is not None and birth_date is None:
        errors.append(FieldError("citizen.birth_date", "required"))
    if campaign.postcodes and not postcode:
        errors.append(FieldError("citizen.postcode", "required"))
    if errors:
        raise ValidationFailed(*errors)
    if campaign.postcodes and postcode not in campaign.postcodes:
        raise NotEligible("not_resident", postcodes=", ".join(campaign.postcodes))
    min_age = campaign.min_age
    if min_age is not None and birth_date is not None and age_on(birth_date, day) < min_age:
        raise NotEligible("too_young", min_age=min_age, eligible_from=birthday(birth_date, min_age))


def second_dose_days(campaign: CampaignInfo, first_day: date) -> tuple[date, date]:
    """The local dates the second dose may fall on, both inclusive."""
    low = campaign.second_dose_min_days or 0
    high = campaign.second_dose_max_days if campaign.second_dose_max_days is not None else low
    return first_day + timedelta(days=low), first_day + timedelta(days=high)
