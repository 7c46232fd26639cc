"""Bookings as calendar events: what a citizen's .ics and a staff feed say about a booking."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, urlsplit

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.catalog import Catalog
from scheduler.booking.feeds import FeedBooking, summary_for
from scheduler.calendar.ical import EventData

STATUS = {
    m.BookingStatus.CANCELLED.value: "CANCELLED",
    m.BookingStatus.PENDING.value: "TENTATIVE",
}


def uid_host(base_url: str) -> str:
    return urlsplit(base_url).hostname or "localhost"


def manage_url(base_url: str, reference: str, token: str) -> str:
    return (
        f"{base_url.rstrip('/')}/buchung/{codes.format_reference(reference)}?token={quote(token)}"
    )


def _place(catalog: Catalog, location_id: str) -> str:
    location = catalog.locations.get(location_id)
    return f"{location.name}, {location.address}" if location else ""


def booking_events(
    catalog: Catalog, booking: m.Booking, base_url: str, token: str, language: str
) -> list[EventData]:
    """The citizen's events: one per appointment (a vaccination series has two). The first
    keeps the booking's UID; a later one gets ``<booking>-<n>``, so calendar apps update each."""
    appointments = sorted(booking.appointments, key=lambda a: a.position)
    if len(appointments) < 2:
        return [booking_event(catalog, booking, base_url, token, language)]
    events = []
    for n, appointment in enumerate(appointments):
        event = booking_event(
            catalog, booking, base_url, token, language, service_ids=appointment.service_ids
        )
        events.append(
            dataclasses.replace(
                event,
                uid=event.uid if n == 0 else f"{booking.id}-{n}@{uid_host(base_url)}",
                start=appointment.starts_at,
                end=appointment.ends_at,
            )
        )
    return events


def booking_event(
    catalog: Catalog,
    booking: m.Booking,
    base_url: str,
    token: str,
    language: str,
    *,
    service_ids: list[str] | None = None,
) -> EventData:
    """The citizen's event: services, place, what to bring, the manage link."""
    if service_ids is None:
        service_ids = [s for a in booking.appointments for s in a.service_ids]
    services = [catalog.services[s] for s in service_ids if s in catalog.services]
    names = [s.display_name(language) for s in services]
    link = manage_url(base_url, booking.reference, token)
    reference = codes.format_reference(booking.reference)
    if language == "en":
        lines = [f"Booking code: {reference}"]
        lines += [s.description_en or s.description for s in services if s.description]
        lines.append(f"Change or cancel: {link}")
    else:
        lines = [f"Buchungscode: {reference}"]
        lines += [s.description for s in services if s.description]
        lines.append(f"Ändern oder absagen: {link}")
    return EventData(
        uid=f"{booking.id}@{uid_host(base_url)}",
        start=booking.starts_at,
        end=booking.ends_at,
        summary=", ".join(names),
        location=_place(catalog, booking.location_id),
        description="\n".join(lines),
        sequence=booking.sequence,
        status=STATUS.get(booking.status, "CONFIRMED"),
        last_modified=booking.updated_at,
        url=link,
    )


def feed_events(
    catalog: Catalog,
    booking: FeedBooking,
    location_id: str,
    privacy: str,
    base_url: str,
    calendar_id: str,
) -> list[EventData]:
    """A staff feed's events of one booking: one per appointment on this calendar (a series
    has two, with the UIDs of the citizen's .ics)."""
    event = feed_event(catalog, booking, location_id, privacy, base_url)
    if len(booking.visits) < 2:
        return [event]
    events = []
    for n, (service_ids, start, end, calendar_ids) in enumerate(booking.visits):
        if calendar_id not in calendar_ids:
            continue
        names = [catalog.services[s].name for s in service_ids if s in catalog.services]
        events.append(
            dataclasses.replace(
                event,
                uid=event.uid if n == 0 else f"{booking.id}-{n}@{uid_host(base_url)}",
                start=start,
                end=end,
                summary=summary_for(names, booking.attendee_name, privacy),
            )
        )
    return events or [event]


def feed_event(
    catalog: Catalog, booking: FeedBooking, location_id: str, privacy: str, base_url: str
) -> EventData:
    """A staff feed's event: the service and, as configured, the name or initials — never a
    birth date or contact data."""
    names = [catalog.services[s].name for s in booking.service_ids if s in catalog.services]
    return EventData(
        uid=f"{booking.id}@{uid_host(base_url)}",
        start=booking.starts_at,
        end=booking.ends_at,
        summary=summary_for(names, booking.attendee_name, privacy),
        location=_place(catalog, location_id),
        description=f"Buchungscode: {codes.format_reference(booking.reference)}",
        sequence=booking.sequence,
        status=STATUS.get(booking.status, "CONFIRMED"),
        last_modified=booking.updated_at,
    )
