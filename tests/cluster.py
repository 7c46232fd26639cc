"""A real Redis Cluster for tests: 3 masters with one replica each, started from the
``redis-server`` on PATH (Redis 7: ``cluster-port``), on free loopback ports.

    with RedisClusterProcs(tmp_path / "cluster") as cluster:
        url = cluster.url                       # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...
        master = cluster.master_of("sch:{rathaus}:ver")
        master.kill()                           # SIGKILL by pid
        cluster.wait_failover(master, "sch:{rathaus}:ver")

It can stand in for ``scheduler.redisproc.RedisServer`` in the session fixtures
(``SCHEDULER_TEST_REDIS=cluster``): ``kill()`` SIGKILLs every node (Redis is gone), ``start()``
brings up an empty new cluster on the same ports (new run ids, like a restarted server).
Every process is started in a session of its own and killed by its pid.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

from scheduler.redisproc import RedisServerError, find_redis_server

NODE_TIMEOUT_MS = 1000


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def start(self) -> None:
        """Start the node empty (no persistence, no cluster configuration from before)."""
        if self.running():
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", str(self.folder / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # a replica may always take over (its data is seconds old at most here)
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--maxclients", "4064",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_answering(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                tail = (self.folder / "redis.log").read_text(errors="replace")[-500:]
                raise RedisServerError(f"cluster node {self.port} exited at start: {tail}")
            try:
                with self.client(0.5) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.02)
        raise RedisServerError(f"cluster node {self.port} did not answer in time")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the node (SIGKILL by default) by its pid and wait for it to go."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def info(self, section: str) -> dict[str, object]:
        with self.client() as client:
            return dict(client.info(section))  # type: ignore[arg-type]


class RedisClusterProcs:
    """Six redis-server processes in cluster mode: 3 masters, 3 replicas."""

    def __init__(self, folder: Path | None = None, *, masters: int = 3, replicas: int = 1) -> None:
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="scheduler-cluster-"))
        self.masters = masters
        self.replicas = replicas
        count = masters * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes = [
            ClusterNode(ports[i], ports[count + i], self.folder / f"node-{ports[i]}")
            for i in range(count)
        ]

    # -- the RedisServer interface of the session fixtures -----------------------------------

    @property
    def url(self) -> str:
        """Every node as a seed: a client started while one of them is down still connects."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """A living node's process, or None when none lives (like ``RedisServer.process``)."""
        return next((n.process for n in self.nodes if n.running()), None)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 30.0) -> None:
        """Start every node empty and create the cluster; waits for ``cluster_state:ok``."""
        if all(node.running() for node in self.nodes) and self._state_ok():
            return
        self.kill()
        self.folder.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.start()
        try:
            for node in self.nodes:
                node.wait_answering()
            created = subprocess.run(
                [
                    shutil.which("redis-cli") or "redis-cli",
                    "--cluster", "create",
                    *(node.address for node in self.nodes),
                    "--cluster-replicas", str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if created.returncode != 0:
                tail = created.stdout[-800:]
                raise RedisServerError(f"redis-cli --cluster create failed: {tail}")
            self.wait_ok(timeout)
            self.wait_replicas_synced(timeout)
        except BaseException:
            self.kill()
            raise

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal every node (SIGKILL by default): the whole cluster is gone."""
        for node in self.nodes:
            node.kill(sig)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RedisClusterProcs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- topology ---------------------------------------------------------------------------

    def living(self) -> Iterator[ClusterNode]:
        return (node for node in self.nodes if node.running())

    def node_at(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def _state_ok(self, nodes: list[ClusterNode] | None = None) -> bool:
        for node in nodes if nodes is not None else list(self.living()):
            try:
                with node.client(0.5) as client:
                    info = client.execute_command("CLUSTER", "INFO")
            except redis.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every living node reports ``cluster_state:ok`` and all of them agree on which
        living master serves each slot (after a failover, a node that has not marked the old
        master failed yet still reports ok with the old owner)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            living = list(self.living())
            try:
                views = {self._slot_owners(node) for node in living}
                alive = {node.port for node in living}
                if (
                    self._state_ok(living)
                    and len(views) == 1
                    and {port for _, _, port in next(iter(views))} <= alive
                ):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RedisServerError(f"cluster not ok after {timeout} s")

    @staticmethod
    def _slot_owners(asked: ClusterNode) -> tuple[tuple[int, int, int], ...]:
        """(first slot, last slot, master port) of every range, as ``asked`` sees them."""
        with asked.client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        return tuple(sorted((int(f), int(la), int(m[1])) for f, la, m, *_ in ranges))

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Until every living replica has its master link up (its first sync done): before
        that, a failover would promote an empty replica."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                infos = [node.info("replication") for node in self.living()]
            except redis.RedisError:
                infos = []
            replicas = [i for i in infos if i.get("role") == "slave"]
            if (
                infos
                and len(replicas) == self.masters * self.replicas
                and all(i.get("master_link_status") == "up" for i in replicas)
            ):
                return
            time.sleep(0.05)
        raise RedisServerError(f"cluster replicas not in sync after {timeout} s")

    @classmethod
    def _owner_port(cls, asked: ClusterNode, slot: int) -> int | None:
        """The port of the master serving ``slot`` as ``asked`` sees it (None if unknown)."""
        for first, last, port in cls._slot_owners(asked):
            if first <= slot <= last:
                return port
        return None

    def master_of(self, key: str) -> ClusterNode:
        """The master that owns ``key``'s hash slot now (asked of a living node)."""
        slot = key_slot(key.encode())
        for asked in self.living():
            try:
                port = self._owner_port(asked, slot)
            except redis.RedisError:
                continue
            if port is not None:
                return self.node_at(port)
        raise RedisServerError(f"no living node knows the owner of slot {slot}")

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        found = []
        for node in self.living():
            info = node.info("replication")
            if info.get("role") == "slave" and int(str(info.get("master_port"))) == master.port:
                found.append(node)
        return found

    def wait_failover(self, old: ClusterNode, key: str, timeout: float = 30.0) -> ClusterNode:
        """Until a replica has taken ``key``'s slot over from ``old`` and every living node
        agrees (``wait_ok``); returns the new master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                owner = self.master_of(key)
                if owner.port != old.port and owner.info("replication")["role"] == "master":
                    self.wait_ok(max(deadline - time.monotonic(), 0.1))
                    if self.master_of(key).port == owner.port:
                        return owner
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RedisServerError(f"no failover from {old.address} within {timeout} s")
