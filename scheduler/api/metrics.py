"""``GET /metrics``: the Prometheus exposition text, for an admin API key.

The figures name no person, but they show the service's traffic and what it refuses; as no
setting opens them, the route is guarded like every admin route (Prometheus sends the key with
``authorization: {credentials_file: …}`` in its scrape configuration). With several worker
processes, the answer adds up every worker's values (see :mod:`scheduler.metrics`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get

from scheduler import metrics
from scheduler.api.auth import require


@get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    guards=[require()],
    include_in_schema=False,
)
async def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    # reading every worker's files is file I/O: off the event loop
    body = await asyncio.to_thread(metrics.render, request.app.state.metrics_dir)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
