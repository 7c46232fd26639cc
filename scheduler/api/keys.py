"""Admin API for API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, route
from litestar.enums import HttpMethod
from litestar.params import PathParameter

from scheduler.api.auth import KEY_REQUIRED, forget_cached_keys, require
from scheduler.api.params import screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    allowing,
    strict_body,
)
from scheduler.booking import apikeys
from scheduler.booking import models as m
from scheduler.booking.core import Core


def _out(row: m.ApiKey) -> KeyOut:
    return KeyOut(
        row.id, row.name, row.role, list(row.calendar_ids), row.created_at, row.revoked_at
    )


class KeysController(Controller):
    path = "/keys"
    before_request = screened
    tags = ["admin"]
    guards = [require(m.Role.ADMIN)]
    security = KEY_REQUIRED

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)
    def allow(self) -> Response[None]:
        return allowing("GET", "POST")

    @post(
        "/",
        operation_id="createKey",
        summary="Create an API key (shown once)",
        responses=problem_responses(400, 401, 403, 413, 422),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            KeyCreate,
            strict_body({"role": "staff", "name": "Schalter 1", "calendar_ids": ["schalter-1"]}),
        ],
    ) -> KeyCreated:
        core: Core = request.app.state.core
        async with core.sessions() as session, session.begin():
            row, secret = await apikeys.create_key(
                session,
                role=data.role,
                name=data.name,
                calendar_ids=data.calendar_ids,
                known_calendars=set(core.catalog.calendars),
                now=core.clock.now(),
            )
        return KeyCreated(
            row.id, row.name, row.role, list(row.calendar_ids), row.created_at, secret
        )

    @get(
        "/",
        operation_id="listKeys",
        summary="API keys (without their secrets)",
        responses=problem_responses(401, 403),
    )
    async def list_keys(self, request: Request[Any, Any, Any]) -> list[KeyOut]:
        core: Core = request.app.state.core
        async with core.sessions() as session:
            return [_out(row) for row in await apikeys.list_keys(session)]

    @delete(
        "/{key_id:str}",
        operation_id="revokeKey",
        summary="Revoke an API key",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def revoke(
        self, request: Request[Any, Any, Any], key_id: Annotated[str, PathParameter(max_length=64)]
    ) -> None:
        core: Core = request.app.state.core
        async with core.sessions() as session, session.begin():
            await apikeys.revoke_key(session, key_id, core.clock.now())
        forget_cached_keys()
