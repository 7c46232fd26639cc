"""axe-core from the npm registry, kept in ``.cache/axe`` (outside git) for the browser tests.

    python -m tests.e2e.axe          # fetch the pinned version unless it is cached (.ci/run)

The version is pinned here and nowhere else; a cache holding another version is replaced.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

AXE_CORE_VERSION = "4.10.3"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "axe"
PACKAGE = CACHE / "node_modules" / "axe-core"
SCRIPT = PACKAGE / "axe.min.js"


class AxeUnavailable(Exception):
    """axe-core is not cached and could not be fetched (no npm, no registry, a timeout)."""


def cached_version() -> str | None:
    """The version of the cached axe-core, or None when there is none (or no script)."""
    try:
        manifest = json.loads((PACKAGE / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return str(version) if version and SCRIPT.is_file() else None


def fetch(timeout: float = 180.0) -> Path:
    """The path of the pinned ``axe.min.js``; fetched with npm first unless it is cached.

    Several test runs at once take turns (a lock file in the cache folder)."""
    if cached_version() == AXE_CORE_VERSION:
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        raise AxeUnavailable(f"axe-core {AXE_CORE_VERSION} is not in {CACHE} and npm is missing")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached_version() == AXE_CORE_VERSION:  # another run fetched it meanwhile
            return SCRIPT
        command = [
            npm,
            "install",
            "--prefix",
            str(CACHE),
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
            f"axe-core@{AXE_CORE_VERSION}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise AxeUnavailable(
                f"npm did not fetch axe-core {AXE_CORE_VERSION} within {timeout:.0f} s"
            ) from None
        if done.returncode != 0 or cached_version() != AXE_CORE_VERSION:
            raise AxeUnavailable(
                f"npm could not fetch axe-core {AXE_CORE_VERSION} (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-1000:]}"
            )
    return SCRIPT


def main() -> int:
    try:
        path = fetch()
    except AxeUnavailable as exc:
        print(f"axe-core: {exc}", file=sys.stderr)
        return 1
    print(f"axe-core {cached_version()}: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
