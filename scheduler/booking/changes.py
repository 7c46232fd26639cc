"""Push notice of counter changes, so reads need no Redis round trip while nothing changed.

Every script that changes a location's counters bumps its version and publishes the location id
on ``sch:changes``. Each process keeps the versions it has read and forgets one when its notice
arrives. While the subscription is not confirmed (start-up, Redis restart, a lost node),
nothing is remembered and every read asks Redis.

On Redis Cluster a PUBLISH on any node reaches the subscribers of every node (masters and
replicas), so the feed subscribes with a plain connection to one node of the cluster (not through
the cluster client, whose pub/sub is missing in older redis-py versions and follows slot
ownership). When that node goes away, the feed forgets everything and subscribes at the next
node the cluster client knows.

A generation number per location closes the race between a read and a notice: a version read
from Redis is only remembered if no notice for that location arrived while it was being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

CHANNEL = "sch:changes"
log = logging.getLogger("scheduler.changes")


class ChangeFeed:
    def __init__(self, redis: Any, read_timeout: float = 5.0) -> None:
        self._redis = redis
        self._read_timeout = read_timeout  # how long one read waits for a notice
        self._versions: dict[str, int] = {}
        self._generation: dict[str, int] = {}
        self.live = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        """End the subscription. The cancellation is repeated until the task ends: one that
        meets the read's own timeout can be swallowed (asyncio.timeout in Python 3.11, under
        redis-py's read), and the task would read on forever (a process that never stops)."""
        task, self._task = self._task, None
        self._stopping = True
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.warning("change feed ended", extra={"error": type(task.exception()).__name__})
        self.live = False

    async def _run(self) -> None:
        nodes = _ClusterNodes(self._redis) if isinstance(self._redis, RedisCluster) else None
        while not self._stopping:
            pubsub: Any = None
            try:
                pubsub = (await nodes.next()).pubsub() if nodes else self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                while not self._stopping:
                    message = await pubsub.get_message(timeout=self._read_timeout)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._forget_all()
                        self.live = True
                    elif message["type"] == "message":
                        data = message["data"]
                        self.forget(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, RedisClusterException, OSError) as exc:
                if self.live:
                    log.warning("change feed lost", extra={"error": type(exc).__name__})
                self.live = False
                self._forget_all()
                await asyncio.sleep(0.5)
            finally:
                self.live = False
                self._forget_all()
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                if nodes is not None:
                    await nodes.close()


class _ClusterNodes:
    """Plain clients to the nodes of a Redis Cluster, one at a time, in turn: ``next()``
    closes the previous one and connects to the next node the cluster client knows (its
    topology is refreshed as it meets errors), starting at a random one so that the processes
    of a deployment spread their subscriptions."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._turn = random.randrange(1 << 16)
        self._client: Redis | None = None
        self._pool: ConnectionPool | None = None

    async def next(self) -> Redis:
        await self.close()
        if not self._cluster.get_nodes():
            await self._cluster.initialize()
        nodes = sorted(self._cluster.get_nodes(), key=lambda node: node.name)
        node = nodes[self._turn % len(nodes)]
        self._turn += 1
        self._pool = ConnectionPool(
            connection_class=node.connection_class, max_connections=2, **node.connection_kwargs
        )
        self._client = Redis(connection_pool=self._pool)
        return self._client

    async def close(self) -> None:
        client, pool, self._client, self._pool = self._client, self._pool, None, None
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()
            if pool is not None:
                await pool.disconnect()
