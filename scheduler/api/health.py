"""``GET /health``: SQL and Redis. 200 while SQL is up (degraded without Redis), else 503."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from scheduler.api.schemas import HealthOut
from scheduler.booking.core import Core


@get(
    "/health",
    operation_id="health",
    summary="Health of SQL and Redis",
    tags=["health"],
    responses={503: ResponseSpec(HealthOut, description="SQL is down", generate_examples=False)},
)
async def health(request: Request[Any, Any, Any]) -> Response[HealthOut]:
    core: Core = request.app.state.core
    sql, redis = await asyncio.gather(core.sql_ok(), core.redis_ok())
    status = "ok" if sql and redis else "degraded" if sql else "down"
    body = HealthOut(status=status, sql="ok" if sql else "down", redis="ok" if redis else "down")
    return Response(body, status_code=200 if sql else 503, headers={"Cache-Control": "no-store"})
