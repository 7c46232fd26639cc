"""Where the files that ship with the package are: migrations and seeds.

Installed, they are the packages ``scheduler.migrations`` and ``scheduler.seeds`` (mapped from the
top-level folders by pyproject); in a source checkout they are the folders themselves.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def _folder(package: str, top_level: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _ROOT.parent / top_level


def migrations_dir() -> Path:
    return _folder("scheduler.migrations", "migrations")


def seeds_dir() -> Path:
    return _folder("scheduler.seeds", "seeds")


def demo_seed() -> Path:
    return seeds_dir() / "tangerhuette.toml"
