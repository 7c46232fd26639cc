"""Redis clients from ``SCHEDULER_REDIS_URL``:

* standalone: ``redis://``, ``rediss://``, ``unix://``;
* Cluster: ``redis+cluster://[user:password@]host:port[,host:port...]``, every address a seed
  node, so a client started while one of them is down still finds the cluster;
* Sentinel: ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``, the
  addresses of the sentinels and the name of the monitored master; every new connection asks
  the sentinels for the current master (the user and password are the master's; the sentinels
  are asked without).

Short timeouts and no silent retries: when Redis is gone, holds must fail fast (503) and reads
fall back to SQL.

On Cluster, redis-py raises ``RedisClusterException`` (not a ``RedisError``) when no node can be
reached or a slot has no master (between a master's failure and its replica's promotion); the
client here raises those as ``redis.exceptions.ConnectionError``, so every caller that handles an
unreachable Redis (503, fall back to SQL, fail open) handles a cluster in trouble the same way.

Both clients also turn the ``AttributeError``/``TypeError``/``RuntimeError`` that redis-py's
asyncio connection lets escape when a connection is closed while a command is being written to
it (a node died; the cluster client dropped its connections to re-read the topology; redis-py
issues #3546, #4287) into ``ConnectionError``: a failover answers 503, not 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
_ACL_WRITES = frozenset({"SETUSER", "DELUSER"})


def _closed_while_writing(exc: BaseException) -> bool:
    """True for the error of a write to a connection closed under it: an ``AttributeError``,
    ``TypeError`` or ``RuntimeError`` (uvloop: "the handler is closed") raised while redis-py's
    asyncio connection sends a command."""
    if not isinstance(exc, AttributeError | TypeError | RuntimeError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in _SEND_FUNCTIONS and code.co_filename.endswith(_CONNECTION_MODULE):
            return True
        tb = tb.tb_next
    return False


_CONNECTION_MODULE = "redis/asyncio/connection.py"
_SEND_FUNCTIONS = frozenset({"send_packed_command", "_send_packed_command"})


class SchedulerRedis(Redis):
    """``Redis`` (standalone) whose closed-while-writing errors are ``ConnectionError``s."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)
        except (AttributeError, TypeError, RuntimeError) as exc:
            if _closed_while_writing(exc):
                raise RedisConnectionError("connection closed while writing") from exc
            raise


class SchedulerRedisCluster(RedisCluster):
    """``RedisCluster`` whose failures are all ``RedisError``s (see the module docstring), and
    whose database-wide commands mean what they mean on one server: ``KEYS`` lists the keys
    of every master, ``ACL SETUSER``/``ACL DELUSER`` change the user on every node."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if "target_nodes" not in kwargs and args:
                command = str(args[0]).upper()
                if command == "KEYS":
                    kwargs["target_nodes"] = self.PRIMARIES
                elif command == "ACL" and len(args) > 1 and str(args[1]).upper() in _ACL_WRITES:
                    if not self.get_nodes():
                        await self.initialize()
                    # the nodes themselves: a node flag is not honoured for ACL (redis-py 8.1)
                    kwargs["target_nodes"] = self.get_nodes()
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"Redis Cluster unavailable: {exc}") from exc
        except (AttributeError, TypeError, RuntimeError) as exc:
            if _closed_while_writing(exc):
                raise RedisConnectionError("connection closed while writing") from exc
            raise


def cluster_seeds(url: str, default_port: int = 6379) -> list[tuple[str, int]]:
    """The (host, port) addresses of a ``redis+cluster://`` or ``redis+sentinel://`` URL:
    ``host[:port]`` or ``[ipv6][:port]`` separated by commas, ``default_port`` when none."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    seeds = []
    for part in filter(None, (p.strip() for p in netloc.split(","))):
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":") or str(default_port)
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:
            host, port = part, str(default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"not a host:port in {url.partition('://')[0]}:// URL: {part!r}")
        seeds.append((host, int(port)))
    if not seeds:
        raise ValueError(f"a {url.partition('://')[0]}:// URL needs at least one host")
    return seeds


def sentinel_service(url: str) -> tuple[str, int]:
    """The master's service name and database of a ``redis+sentinel://`` URL."""
    name, _, db = urlsplit(url).path.strip("/").partition("/")
    if not name:
        raise ValueError("a redis+sentinel:// URL needs the master's name: .../mymaster")
    if db and not db.isdigit():
        raise ValueError(f"not a database number in a redis+sentinel:// URL: {db!r}")
    return name, int(db or 0)


def connect(url: str, *, max_connections: int = 256) -> Any:
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
    }
    if url.startswith(CLUSTER_SCHEME + "://"):
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        # the URL's options (user, password, query) as redis-py reads them; the nodes apart
        plain = f"redis://{userinfo + '@' if userinfo else ''}localhost{parts.path}"
        if parts.query:
            plain += f"?{parts.query}"
        kwargs = parse_url(plain)
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True
        return SchedulerRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster_seeds(url)],
            **{**kwargs, **options},
        )
    if url.startswith(SENTINEL_SCHEME + "://"):
        parts = urlsplit(url)
        service, db = sentinel_service(url)
        sentinel = Sentinel(
            cluster_seeds(url, default_port=26379),
            sentinel_kwargs={
                "socket_timeout": SOCKET_TIMEOUT,
                "socket_connect_timeout": CONNECT_TIMEOUT,
            },
            **options,
        )
        return sentinel.master_for(
            service,
            redis_class=SchedulerRedis,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            max_connections=max_connections,
        )
    return SchedulerRedis.from_url(url, max_connections=max_connections, **options)
