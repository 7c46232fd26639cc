"""Redis clients from ``SCHEDULER_REDIS_URL``: standalone (redis://, rediss://, unix://) or
Cluster (``redis+cluster://host:port``). Short timeouts and no silent retries: when Redis is
gone, holds must fail fast (503) and reads fall back to SQL."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry


def connect(url: str, *, max_connections: int = 256) -> Any:
    options: dict[str, Any] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
    }
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url[len("redis+cluster://") :], **options)
    return Redis.from_url(url, max_connections=max_connections, **options)
