"""The probe: a bare Litestar app that serves a precomputed answer — the cost of serving alone.

``PROBE_BODY`` names a file with the exact bytes the real endpoint returned.
"""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get


def create() -> Litestar:
    body = Path(os.environ["PROBE_BODY"]).read_bytes()

    @get("/probe", sync_to_thread=False)
    def probe() -> Response[bytes]:
        return Response(body, media_type="application/json")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([probe, health], logging_config=None)
