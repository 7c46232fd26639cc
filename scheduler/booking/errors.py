"""Domain errors of the booking core. Each carries a stable ``code``; ``scheduler.api.problems``
is the one place that turns them into HTTP answers and sentences.

    DomainError
    ├── NotFound                 not_found (also "exists but is not yours")
    ├── ValidationFailed         validation_failed, with errors [(field, message)]
    ├── Forbidden                forbidden
    ├── SlotFull                 slot_full
    ├── HoldExpired              hold_expired
    ├── LimitReached             limit_reached (reason: person, email, phone; limit)
    ├── CampaignFull             campaign_full (every place of the campaign is given out)
    ├── WaitlistFirst            waitlist_first (people wait: freed series go to them first)
    ├── OfferExpired             offer_expired (a waiting-list offer lapsed or was withdrawn)
    ├── NotAnOffer               not_an_offer (the booking is no waiting-list offer)
    ├── OptInExpired             opt_in_expired (an unconfirmed booking lapsed or was cancelled)
    ├── NotEligible              not_eligible
    ├── WindowClosed             window_closed (opens_at)
    ├── CapacityConflict         capacity_below_booked
    ├── AlreadyChanged           already_changed
    ├── IdempotencyKeyReused     idempotency_key_reused
    ├── RateLimited              rate_limited (retry_after)
    └── ReservationUnavailable   reservation_unavailable (retry_after)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "error"

    def __init__(self, **params: Any) -> None:
        super().__init__(self.code)
        self.params = params


class NotFound(DomainError):
    code = "not_found"

    def __init__(self, kind: str, ident: str = "") -> None:
        super().__init__(kind=kind, ident=ident)


class FieldError:
    __slots__ = ("field", "message_key", "params")

    def __init__(self, field: str, message_key: str, **params: Any) -> None:
        self.field = field
        self.message_key = message_key
        self.params = params


class ValidationFailed(DomainError):
    code = "validation_failed"

    def __init__(self, *errors: FieldError) -> None:
        super().__init__()
        self.errors = list(errors)


class Forbidden(DomainError):
    code = "forbidden"


class SlotFull(DomainError):
    code = "slot_full"


class HoldExpired(DomainError):
    code = "hold_expired"


class LimitReached(DomainError):
    """A limit of active bookings: the person's per service (``person``, the default), or the
    anti-trading limit per contact ``email`` address or ``phone`` number (with ``limit``)."""

    code = "limit_reached"

    def __init__(self, reason: str = "person", limit: int | None = None) -> None:
        if limit is None:
            super().__init__(reason=reason)
        else:
            super().__init__(reason=reason, limit=limit)


class CampaignFull(DomainError):
    code = "campaign_full"


class WaitlistFirst(DomainError):
    code = "waitlist_first"


class OfferExpired(DomainError):
    code = "offer_expired"


class NotAnOffer(DomainError):
    code = "not_an_offer"


class OptInExpired(DomainError):
    """The booking waited for its e-mail confirmation in vain (it lapsed), or it was
    cancelled: there is nothing to confirm any more."""

    code = "opt_in_expired"


class NotEligible(DomainError):
    code = "not_eligible"

    def __init__(self, reason: str, **params: Any) -> None:
        super().__init__(reason=reason, **params)


class WindowClosed(DomainError):
    code = "window_closed"

    def __init__(self, opens_at: datetime | None, closes_at: datetime | None = None) -> None:
        super().__init__(opens_at=opens_at, closes_at=closes_at)


class CapacityConflict(DomainError):
    code = "capacity_below_booked"

    def __init__(self, booked: int) -> None:
        super().__init__(booked=booked)


class AlreadyChanged(DomainError):
    """The booking changed since the caller looked at it (e.g. someone else moved it)."""

    code = "already_changed"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class RateLimited(DomainError):
    """Too many attempts from one client address or for one person; ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after=retry_after)


class ReservationUnavailable(DomainError):
    code = "reservation_unavailable"

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__(retry_after=retry_after)
