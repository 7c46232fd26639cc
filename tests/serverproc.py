"""Run the real ``scheduler serve`` as a subprocess, for tests that talk HTTP to it.

    with start_server(tmp_path, args=["--demo"]) as server:
        urllib.request.urlopen(server.url("/health"))
        pids = server.worker_pids()
        code = server.stop()          # SIGTERM, waits, returns the exit code

Each server gets a free port, a minimal environment (PATH and HOME, plus what the caller adds;
``None`` removes a variable), and its stdout/stderr in files, so a chatty server never blocks on a
full pipe. Leaving the ``with`` block stops the server and kills (by pid) any process it started
that outlived it, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minimal_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """PATH and HOME of this process and nothing else (no SCHEDULER_* leaks in), then overrides."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def read_cmdline(pid: int) -> str:
    """The command line of a process as one string ("" when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def descendants(pid: int) -> list[int]:
    """All living processes below ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return [p for p in found if is_running(p)]


def redis_server_pids(marker: str = "scheduler-redis-") -> list[int]:
    """Every running redis-server whose command line contains ``marker`` (e.g. a socket path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = read_cmdline(int(entry.name))
            if "redis-server" in cmdline and marker in cmdline and is_running(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def redis_folder(cmdline: str) -> Path | None:
    """The folder of the Unix socket in a redis-server's command line (its process title
    reads ``redis-server unixsocket:/tmp/scheduler-redis-…/redis.sock``)."""
    if "redis-server" not in cmdline:
        return None
    for part in cmdline.replace("unixsocket:", " ").split():
        if part.endswith("redis.sock"):
            return Path(part).parent
    return None


def gone_within(pids: Sequence[int], seconds: float) -> bool:
    """Wait up to ``seconds`` for all of ``pids`` to end; True if they did."""
    deadline = time.monotonic() + seconds
    while True:
        if not any(is_running(pid) for pid in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@dataclass
class ServerProcess:
    """A running ``scheduler serve``."""

    process: subprocess.Popen[bytes]
    port: int
    host: str
    cwd: Path
    stdout_path: Path
    stderr_path: Path
    workers: int
    started: set[int] = field(default_factory=set)  # every descendant ever seen, for clean-up

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (other lines are skipped)."""
        records = []
        for line in self.stderr().splitlines():
            with suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def children(self) -> list[int]:
        """Living processes below the server; remembered for clean-up."""
        found = descendants(self.pid)
        self.started.update(found)
        return found

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (only with ``workers > 1``; else the server itself)."""
        if self.workers <= 1:
            return [self.pid]
        return [
            pid
            for pid in self.children()
            if "multiprocessing" in read_cmdline(pid) and "spawn_main" in read_cmdline(pid)
        ]

    def redis_pids(self) -> list[int]:
        """The private redis-server(s) the server started (none with SCHEDULER_REDIS_URL)."""
        return [pid for pid in self.children() if "redis-server" in read_cmdline(pid)]

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """GET ``path``: status, headers (lower-case names) and body; HTTP errors are answers."""
        return self._call(urllib.request.Request(self.url(path)), timeout)

    def post(
        self, path: str, body: Any, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        """POST ``body`` as JSON to ``path``, answered as :meth:`get`."""
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return self._call(request, timeout)

    def _call(
        self, request: urllib.request.Request, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, headers, response.read()
        except urllib.error.HTTPError as exc:
            headers = {k.lower(): v for k, v in exc.headers.items()}
            return exc.code, headers, exc.read()

    def wait_healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        """Poll ``/health`` until it says ok; fails with the server's output if it never does."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"scheduler serve exited with {self.process.returncode} before it was "
                    f"healthy:\n{self.output()[-3000:]}"
                )
            try:
                status, _, body = self.get("/health", timeout=2)
                last = f"{status} {body[:200]!r}"
                if status == 200:
                    answer: dict[str, Any] = json.loads(body)
                    if answer.get("status") == "ok":
                        self.children()
                        return answer
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(
            f"scheduler serve not healthy after {timeout} s (last: {last}):\n"
            f"{self.output()[-3000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait up to ``timeout`` seconds; returns the exit code.

        Raises ``subprocess.TimeoutExpired`` when the server does not exit in time (the ``with``
        block still kills it afterwards)."""
        self.children()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill_leftovers(self) -> list[int]:
        """SIGKILL the server and every process it started that is still alive; returns those."""
        if self.process.poll() is None:
            self.children()
            self.process.kill()
            self.process.wait()
        leftovers = [pid for pid in self.started if is_running(pid)]
        folders = [redis_folder(read_cmdline(pid)) for pid in leftovers]
        for pid in leftovers:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for folder in folders:
            if folder is not None and folder.name.startswith("scheduler-redis-"):
                gone_within(leftovers, 5)
                shutil.rmtree(folder, ignore_errors=True)
        return leftovers


def command(args: Sequence[str] = (), *, port: int, host: str, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "scheduler.cli", "serve", "--host", host, "--port", str(port)]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    return [*cmd, *args]


@contextmanager
def start_server(
    cwd: Path,
    *,
    args: Sequence[str] = ("--demo",),
    env: Mapping[str, str | None] | None = None,
    workers: int = 1,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
    wait: bool = True,
    timeout: float = 60.0,
) -> Iterator[ServerProcess]:
    """Start ``scheduler serve`` in ``cwd`` with ``minimal_env(env)``; wait for /health (unless
    ``wait=False``); stop it (SIGTERM) and kill whatever is left when the block ends."""
    cwd.mkdir(parents=True, exist_ok=True)
    logs = log_dir or cwd
    logs.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    stdout_path = logs / f"serve-{port}.stdout"
    stderr_path = logs / f"serve-{port}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command(args, port=port, host=host, workers=workers),
            cwd=cwd,
            env=minimal_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a Ctrl-C at the test's terminal does not reach it
        )
    server = ServerProcess(process, port, host, cwd, stdout_path, stderr_path, workers)
    try:
        if wait:
            server.wait_healthy(timeout)
        yield server
    finally:
        if server.process.poll() is None:
            server.children()
            with suppress(subprocess.TimeoutExpired):
                server.stop(signal.SIGTERM, timeout=15)
        server.kill_leftovers()
