"""The probe: a bare Litestar app that serves a precomputed answer — the cost of serving alone.

``PROBE_BODY`` names a file with the exact bytes the real endpoint returned.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from litestar import Litestar, Response, get, post

from scheduler.api.bookings import HoldCreate
from scheduler.redisconn import connect


def create() -> Litestar:
    body = Path(os.environ["PROBE_BODY"]).read_bytes()

    @get("/probe", sync_to_thread=False)
    def probe() -> Response[bytes]:
        return Response(body, media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([probe, health], logging_config=None)


def create_reserve() -> Litestar:
    """The floor of a hold: decode the same body and run one EVALSHA of a trivial script."""
    redis = connect(os.environ["SCHEDULER_REDIS_URL"])
    reserve = redis.register_script(
        "local n = redis.call('INCR', KEYS[1]) if n < 0 then return 0 end return n"
    )

    @post("/probe-hold", sync_to_thread=False)
    async def probe_hold(data: HoldCreate) -> Response[bytes]:
        taken = await reserve(keys=["sch:{probe}:n"])
        return Response(msgspec.json.encode({"hold_id": str(taken)}), status_code=201)

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([probe_hold, health], logging_config=None)
