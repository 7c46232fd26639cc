"""Shared pieces of the benchmarks: start the real server (or a probe) as processes, and drive
load with wrk (when on PATH) or aiohttp. Nothing here measures itself: the load generator is a
separate process (wrk) or an aiohttp client, never httpx."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # a bench stopped with SIGTERM (``timeout``, a CI runner) unwinds like Ctrl-C, so its
    # ``finally`` blocks stop the servers it started in sessions of their own
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def start_server(
    workdir: Path, env: dict[str, str], *, workers: int = 1, demo: bool = True
) -> Proc:
    port = free_port()
    log = workdir / f"server-{port}.log"
    args = [sys.executable, "-m", "scheduler.cli", "serve", "--port", str(port)]
    args += ["--workers", str(workers)] + (["--demo"] if demo else [])
    full_env = {
        **os.environ,
        **env,
        "SCHEDULER_LOG_LEVEL": env.get("SCHEDULER_LOG_LEVEL", "WARNING"),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args,
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc(process, port, log)
    try:
        wait_ready(proc.base + "/health", process, timeout=120)
    except RuntimeError:
        proc.stop()
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    return proc


def start_uvicorn(workdir: Path, factory: str, env: dict[str, str], *, workers: int = 1) -> Proc:
    """Start ``factory`` under uvicorn with the same flags ``scheduler serve`` uses."""
    port = free_port()
    log = workdir / f"probe-{port}.log"
    code = (
        "import uvicorn; uvicorn.run("
        f"{factory!r}, factory=True, host='127.0.0.1', port={port}, "
        f"workers={workers if workers > 1 else None}, access_log=False, log_config=None, "
        "timeout_graceful_shutdown=10, backlog=4096)"
    )
    root = str(Path(__file__).resolve().parent.parent)
    full_env = {**os.environ, **env, "PYTHONPATH": root}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc(process, port, log)
    wait_ready(proc.base + "/health", process)
    return proc


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.rps:9.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
            f"errors {self.errors}  ({self.requests} requests in {self.seconds:.1f} s, {self.tool})"
        )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    found = re.match(r"([\d.]+)(us|ms|s)", text)
    if not found:
        return float("nan")
    return float(found.group(1)) * _UNITS[found.group(2)]


def wrk(
    url: str, seconds: int, connections: int, threads: int = 2, header: str | None = None
) -> LoadResult:
    """wrk's figures; with ``header`` (e.g. If-None-Match) 304 answers count as fine."""
    extra = ["-H", header] if header else []
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    duration = re.search(r"requests in ([\d.]+)(ms|s|m)", out)  # type: ignore[union-attr]
    secs = float(duration.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[duration.group(2)]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx and not header else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return LoadResult(requests, secs, errors, p50, p99, "wrk")


async def _aiohttp_load(
    url: str, seconds: float, connections: int, header: str | None = None
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                headers = dict([header.split(": ", 1)]) if header else None
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status not in (200, 304):
                        errors += 1
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        took = time.perf_counter() - began
    latencies.sort()
    return LoadResult(
        len(latencies),
        took,
        errors,
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99)],
        "aiohttp",
    )


def load(url: str, seconds: int, connections: int, header: str | None = None) -> LoadResult:
    """Load ``url`` with GETs (wrk when installed, else aiohttp); ``header`` as "Name: value"."""
    if shutil.which("wrk"):
        return wrk(url, seconds, connections, header=header)
    return asyncio.run(_aiohttp_load(url, seconds, connections, header))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def seeded_server(
    seed: Path, db_url: str, redis_url: str, work: Path, *, workers: int
) -> tuple[Proc, dict[str, str]]:
    """Seed ``db_url`` with ``seed`` and start the real server on it (rate limits off: one
    client address sends every request). Returns the server and its environment."""
    env = {
        "SCHEDULER_DATABASE_URL": db_url,
        "SCHEDULER_REDIS_URL": redis_url,
        "SCHEDULER_RATE_LIMITS": "off",
        "SCHEDULER_SECRET_KEY": "bench-secret-" + "x" * 40,
    }
    subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "seed", str(seed)],
        cwd=work, env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    return start_server(work, env, workers=workers, demo=False), env
