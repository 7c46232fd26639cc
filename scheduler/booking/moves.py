"""Moving a booking: which of its appointments a new visit replaces, and what to hold for a move.

A booking has one appointment, or two for a vaccination series (first dose, second dose).

- An ordinary booking moves as a whole: the same services for the same number of people.
- A series, given a new first-dose start: the first dose moves; the second stays where it is
  while it is still inside the dose interval counted from the new first day, else it moves
  too — to ``second_start`` when one is given, else to the earliest second-dose start with room
  (one hold for both, all or nothing).
- A series, given only ``second_start``: the second dose moves, inside its interval.

When the first dose moves, eligibility is judged again on its new day, from the attendee stored
on the booking (someone who turns 76 next week cannot move their first dose to this week). A
move takes no new campaign place and is no new series: the places limit, the waiting list and
the one-series rule do not apply to it, and neither does the booking window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from scheduler.booking import campaigns
from scheduler.booking import models as m
from scheduler.booking.catalog import CampaignInfo, Catalog
from scheduler.booking.errors import FieldError, ValidationFailed
from scheduler.booking.holds import PlannedAppointment


def ordered(booking: m.Booking) -> list[m.Appointment]:
    return sorted(booking.appointments, key=lambda a: a.position)


def series_campaign(catalog: Catalog, booking: m.Booking) -> CampaignInfo | None:
    """The campaign of a series booking (two appointments), else None."""
    current = ordered(booking)
    if len(current) != 2:
        return None
    return campaigns.campaign_of(catalog, current[0].service_ids)


def check_interval(
    campaign: CampaignInfo, first_start: datetime, second_start: datetime, tz: ZoneInfo
) -> None:
    """The second dose must fall inside the interval counted from the first dose's local day."""
    low, high = campaigns.second_dose_days(campaign, first_start.astimezone(tz).date())
    if not low <= second_start.astimezone(tz).date() <= high:
        raise ValidationFailed(
            FieldError(
                "second_start", "second_dose_interval",
                min=campaign.second_dose_min_days, max=campaign.second_dose_max_days,
            )
        )  # fmt: skip


def replaced(current: Sequence[m.Appointment], planned: Sequence[PlannedAppointment]) -> list[int]:
    """The indexes of the appointments the planned visits replace, in the planned order: all of
    them (same services), or one appointment of a series. Anything else is ``other_services``."""
    wanted = [sorted(p.service_ids) for p in planned]
    have = [sorted(a.service_ids) for a in current]
    if wanted == have:
        return list(range(len(current)))
    if len(current) == 2 and len(planned) == 1 and wanted[0] in have:
        return [have.index(wanted[0])]
    raise ValidationFailed(FieldError("hold_id", "other_services"))


def check_moved(
    catalog: Catalog,
    booking: m.Booking,
    after: Sequence[tuple[datetime, datetime]],
    first_moved: bool,
) -> None:
    """Under the booking's lock, with ``after`` the (start, end) of every appointment once moved:
    a series keeps its interval; a campaign's attendee is still eligible on a new first day."""
    current = ordered(booking)
    campaign = campaigns.campaign_of(catalog, current[0].service_ids)
    if campaign is None:
        return
    tz = catalog.locations[booking.location_id].tz
    if len(after) == 2:
        check_interval(campaign, after[0][0], after[1][0], tz)
    if first_moved:
        attendee = _Attendee(
            booking.attendee_name, booking.attendee_birth_date, booking.attendee_postcode
        )
        campaigns.check_person(campaign, attendee, after[0][0].astimezone(tz).date())


class _Attendee:
    """The person stored on a booking, as the campaign checks read it."""

    __slots__ = ("birth_date", "name", "postcode")

    def __init__(self, name: str | None, birth_date: object, postcode: str | None) -> None:
        self.name = name
        self.birth_date = birth_date
        self.postcode = postcode
