"""Redis Sentinel (``redis+sentinel://``): a master, its replica and one sentinel, real
processes. SIGKILL of the master: while the sentinel promotes the replica, calls fail with
``RedisError`` (503 for the service, never 500); afterwards the same client reaches the new
master, its run id differs (the counters get rebuilt), scripts run again after the new
master's NOSCRIPT answer, and the change feed subscribes again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError

from scheduler.booking.changes import CHANNEL, ChangeFeed
from scheduler.booking.gate import Gate
from scheduler.redisconn import connect
from tests.cluster import free_ports

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shutil.which("redis-server") and os.environ.get("CI") != "true",
        reason="needs redis-server",
    ),
]


class SentinelRig:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.master_port, self.replica_port, self.sentinel_port = free_ports(3)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, args: list[str]) -> None:
        with (self.folder / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", *args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        common += ["--dir", str(self.folder), "--repl-diskless-sync-delay", "0"]
        self._start("master", ["--port", str(self.master_port), *common, "--dbfilename", "m.rdb"])
        self._start(
            "replica",
            ["--port", str(self.replica_port), *common, "--dbfilename", "r.rdb",
             "--replicaof", "127.0.0.1", str(self.master_port)],
        )  # fmt: skip
        self._wait(self._replica_synced, "the replica did not sync")
        # started after the sync: its first look at the master shows the replica
        conf = self.folder / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor scheduler 127.0.0.1 {self.master_port} 1\n"
            "sentinel down-after-milliseconds scheduler 1000\n"
            "sentinel failover-timeout scheduler 5000\n"
        )
        self._start("sentinel", [str(conf), "--sentinel"])
        self._wait(self._replica_known, "the sentinel does not know the replica")

    def _replica_synced(self) -> bool:
        with redis.Redis(port=self.replica_port, socket_timeout=1) as replica:
            return replica.info("replication").get("master_link_status") == "up"

    def _replica_known(self) -> bool:
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            return bool(sentinel.sentinel_slaves("scheduler"))

    @staticmethod
    def _wait(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/scheduler"

    def kill(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        for name in self.processes:
            self.kill(name)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SentinelRig]:
    setup = SentinelRig(tmp_path / "sentinel")
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


async def test_a_sentinel_failover_is_found_and_noticed(rig: SentinelRig) -> None:
    client = connect(rig.url)
    gate = Gate(client)
    script = client.register_script(
        f"redis.call('INCR', KEYS[1]) redis.call('PUBLISH', '{CHANNEL}', ARGV[1]) return 1"
    )
    feed = ChangeFeed(client)
    feed.start()
    try:
        assert await script(keys=["sch:{rathaus}:ver"], args=["rathaus"]) == 1
        before = await gate.run_id()
        deadline = time.monotonic() + 10
        while not feed.live:
            assert time.monotonic() < deadline, "feed not subscribed"
            await asyncio.sleep(0.05)

        rig.kill("master")
        failures: Counter[str] = Counter()
        deadline = time.monotonic() + 30
        while True:
            try:
                await script(keys=["sch:{rathaus}:ver"], args=["rathaus"])
                break
            except RedisError as exc:  # anything else fails the test
                failures[type(exc).__name__] += 1
            assert time.monotonic() < deadline, f"no new master: {failures}"
            await asyncio.sleep(0.1)
        assert failures  # the failover was felt
        assert await gate.run_id() != before  # a rebuild follows, as after a restart
        with redis.Redis(port=rig.replica_port) as promoted:
            assert promoted.info("replication")["role"] == "master"
            assert promoted.script_exists(script.sha) == [True]  # loaded after NOSCRIPT
        # the change feed lost its connection with the master and subscribed at the new one
        deadline = time.monotonic() + 15
        while not feed.live:
            assert time.monotonic() < deadline, "the feed did not subscribe again"
            await asyncio.sleep(0.05)
        feed.remember("rathaus", 1, feed.generation("rathaus"))
        assert feed.known("rathaus") == 1
        await script(keys=["sch:{rathaus}:ver"], args=["rathaus"])
        deadline = time.monotonic() + 5
        while feed.known("rathaus") is not None:
            assert time.monotonic() < deadline, "no notice from the new master"
            await asyncio.sleep(0.05)
    finally:
        await feed.stop()
        await client.aclose()
