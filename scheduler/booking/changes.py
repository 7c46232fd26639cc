"""Push notice of counter changes, so reads need no Redis round trip while nothing changed.

Every script that changes a location's counters bumps its version and publishes the location id
on ``sch:changes``. Each process keeps the versions it has read and forgets one when its notice
arrives. While the subscription is not confirmed (start-up, Redis restart, Redis Cluster where the
async client has no pub/sub), nothing is remembered and every read asks Redis.

A generation number per location closes the race between a read and a notice: a version read
from Redis is only remembered if no notice for that location arrived while it was being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

CHANNEL = "sch:changes"
log = logging.getLogger("scheduler.changes")


class ChangeFeed:
    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._versions: dict[str, int] = {}
        self._generation: dict[str, int] = {}
        self.live = False
        self._task: asyncio.Task[None] | None = None

    def known(self, location_id: str) -> int | None:
        return self._versions.get(location_id) if self.live else None

    def generation(self, location_id: str) -> int:
        return self._generation.get(location_id, 0)

    def remember(self, location_id: str, version: int, generation: int) -> None:
        if self.live and self._generation.get(location_id, 0) == generation:
            self._versions[location_id] = version

    def forget(self, location_id: str) -> None:
        self._generation[location_id] = self._generation.get(location_id, 0) + 1
        self._versions.pop(location_id, None)

    def _forget_all(self) -> None:
        for location_id in list(self._generation) + list(self._versions):
            self.forget(location_id)

    def start(self) -> None:
        if self._task is None and hasattr(self._redis, "pubsub"):
            self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await self._task
            self._task = None
        self.live = False

    async def _run(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._forget_all()
                        self.live = True
                    elif message["type"] == "message":
                        data = message["data"]
                        self.forget(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                if self.live:
                    log.warning("change feed lost", extra={"error": type(exc).__name__})
                self.live = False
                self._forget_all()
                await asyncio.sleep(0.5)
            finally:
                self.live = False
                self._forget_all()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
