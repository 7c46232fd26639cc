"""A whole hotline call against the real server (`scheduler serve --demo`, HTTP on a port):
find the next slot, book for the caller, find the booking again by name and birth date the
next time they call, move it, cancel it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess, minimal_env, start_server

pytestmark = pytest.mark.slow

CALLER = {"name": "Hildegard Krause", "birth_date": "1941-05-17", "phone": "03935 123456"}
DAUGHTER = {"name": "Petra Krause", "phone": "0171 2345678", "email": "petra@example.org"}


def call(
    server: ServerProcess, method: str, path: str, key: str, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url(path), data=data, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_a_hotline_call_from_first_ring_to_cancellation(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with start_server(work, args=["--demo"]) as server:
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "scheduler.cli",
                "keys",
                "create",
                "--role",
                "agent",
                "--name",
                "Hotline 1",
            ],
            cwd=work,
            env=minimal_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = created.stdout.strip()

        status, slots = call(server, "GET", "/api/v1/agent/next-slots?service=hund-anmelden", key)
        assert status == 200, slots
        assert len(slots) == 5
        first = slots[0]

        # the daughter calls for her mother: attendee and contact are kept apart
        status, booking = call(
            server,
            "POST",
            "/api/v1/bookings",
            key,
            {
                "service_id": "hund-anmelden",
                "start": first["start"],
                "citizen": CALLER,
                "contact": DAUGHTER,
                "consent": True,
            },
        )
        assert status == 201, booking
        assert booking["channel"] == "phone"
        assert booking["citizen"]["name"] == CALLER["name"]
        assert booking["contact"]["email"] == DAUGHTER["email"]
        assert " wie " in booking["spelled_reference"]
        reference = booking["reference"]

        # a week later, without the code
        status, found = call(
            server,
            "GET",
            "/api/v1/agent/bookings?name=hildegard%20krause&birth_date=1941-05-17",
            key,
        )
        assert status == 200, found
        assert [b["reference"] for b in found] == [reference]

        later = slots[-1]
        status, hold = call(
            server,
            "POST",
            "/api/v1/holds",
            key,
            {"service_id": "hund-anmelden", "start": later["start"]},
        )
        assert status == 201, hold
        status, moved = call(
            server,
            "POST",
            f"/api/v1/bookings/{reference}/reschedule",
            key,
            {"hold_id": hold["hold_id"]},
        )
        assert status == 200, moved
        assert moved["start"] == later["start"]

        status, cancelled = call(server, "POST", f"/api/v1/bookings/{reference}/cancel", key)
        assert status == 200, cancelled
        assert cancelled["status"] == "cancelled"

        status, again = call(server, "GET", f"/api/v1/agent/bookings?reference={reference}", key)
        assert [b["status"] for b in again] == ["cancelled"]
        assert server.stop() == 0
    logs = server.stderr()
    for secret in (key, CALLER["name"], "1941-05-17", DAUGHTER["email"], "2345678"):
        assert secret not in logs
