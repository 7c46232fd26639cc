"""Request and response bodies of the read API (msgspec Structs), and what the OpenAPI document
needs beyond what Litestar derives from the handlers:

- ``strict_body`` and ``CLOSED``: a body (or nested struct) whose struct refuses unknown fields
  (``forbid_unknown_fields``) says ``additionalProperties: false``, so generated clients and
  fuzzers know that an unknown field is a 422, not ignored; bodies carry examples.
- ``operation_extras``: an ``operation_class`` for what handler options cannot say: further
  media types of one answer (the agenda's CSV and text) and OpenAPI links (which answer feeds
  which request; the stateful schema tests follow them).
- ``allowing``: the ``OPTIONS`` answer of a path with several methods. Litestar 2's own names
  only the methods of the first handler registered for the path (litestar#4169, fixed in v3
  only), so such controllers declare theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import (
    Example,
    Link,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
)
from litestar.openapi.spec import Schema as OpenAPISchema
from litestar.params import Body, BodyKwarg, KwargDefinition


class SchemaExtra(KwargDefinition):
    """Litestar metadata that only amends the generated schema, usable inside ``X | None``
    (Litestar's own is unhashable there). Its ``schema_extra`` values must be hashable."""

    def __hash__(self) -> int:
        return hash(tuple(sorted((self.schema_extra or {}).items())))


CLOSED = SchemaExtra(schema_extra={"additionalProperties": False})

# Text people type for others to read (names, reasons): no control characters (it goes into
# e-mail headers, CSV files, terminals and logs), and for VISIBLE_TEXT something visible, not
# only spaces or zero-width characters.
PLAIN_TEXT = "^[^\\x00-\\x1f\\x7f]*$"
VISIBLE_TEXT = (
    "^[^\\x00-\\x1f\\x7f]*"
    "[^\\s\\x00-\\x1f\\x7f\\u200b-\\u200f\\u2028-\\u202f\\u2060-\\u206f\\ufeff]"
    "[^\\x00-\\x1f\\x7f]*$"
)


def strict_body(*examples: dict[str, Any], one_of: Sequence[Sequence[str]] = ()) -> BodyKwarg:
    """A JSON body of a struct that refuses unknown fields, with examples (of the demo
    municipality) for the document; ``one_of``: the alternative sets of fields it needs (the
    either-or rules the handler checks, e.g. ``service_id`` or ``service_ids``)."""
    extra: dict[str, Any] = {"additionalProperties": False}
    if one_of:
        extra["oneOf"] = [OpenAPISchema(required=list(fields)) for fields in one_of]
    return Body(
        media_type=RequestEncodingType.JSON,
        schema_extra=extra,
        examples=[Example(value=value) for value in examples],
    )


class LocationOut(msgspec.Struct):
    id: str
    name: str
    address: str
    timezone: str


class CalendarOut(msgspec.Struct):
    id: str
    name: str
    kind: str
    location_id: str
    slot_minutes: int


class ServiceOut(msgspec.Struct):
    id: str
    name: str
    duration_minutes: int
    location_id: str
    campaign_id: str | None
    description: str
    channels: list[str]
    max_days_ahead: int
    min_notice_minutes: int


class SlotOut(msgspec.Struct):
    start: str
    end: str
    free: int


class HealthOut(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    sql: Literal["ok", "down"]
    redis: Literal["ok", "down"]


Slug = Annotated[str, msgspec.Meta(max_length=64)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["agent", "staff", "admin"]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=VISIBLE_TEXT)]
    calendar_ids: Annotated[list[Slug], msgspec.Meta(max_length=100)] = []


class KeyOut(msgspec.Struct):
    id: str
    name: str
    role: str
    calendar_ids: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(msgspec.Struct):
    id: str
    name: str
    role: str
    calendar_ids: list[str]
    created_at: datetime
    key: str


def operation_extras(
    *,
    media_types: Mapping[int, Sequence[str]] | None = None,
    links: Mapping[int, Mapping[str, Link]] | None = None,
) -> type[Operation]:
    """An ``operation_class`` adding text ``media_types`` and ``links`` to answers by status."""

    @dataclass
    class ExtendedOperation(Operation):
        def __post_init__(self) -> None:
            for status, types in (media_types or {}).items():
                response = (self.responses or {}).get(str(status))
                if isinstance(response, OpenAPIResponse):
                    content = response.content = dict(response.content or {})
                    for media_type in types:
                        content[media_type] = OpenAPIMediaType(
                            schema=OpenAPISchema(type=OpenAPIType.STRING)
                        )
            for status, named in (links or {}).items():
                response = (self.responses or {}).get(str(status))
                if isinstance(response, OpenAPIResponse):
                    response.links = {**(response.links or {}), **named}

    return ExtendedOperation


def allowing(*methods: str) -> Response[None]:
    """The ``OPTIONS`` answer of a path whose methods are ``methods``.

    A controller with several methods on one path declares its own ``OPTIONS`` handler
    returning this, named so that it sorts before the path's other handlers (Litestar registers
    a controller's handlers in order of their qualified names, and the first ``OPTIONS``
    handler of a path is the one that answers)."""
    return Response(
        None, status_code=204, headers={"Allow": ", ".join(sorted({*methods, "OPTIONS"}))}
    )
