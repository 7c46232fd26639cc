"""The layout stays true: the core never imports the HTTP layer (DESIGN §2)."""

from __future__ import annotations

import ast
from pathlib import Path

import scheduler

ROOT = Path(scheduler.__file__).parent
FORBIDDEN = {
    "calendar": (
        "scheduler.api",
        "scheduler.app",
        "scheduler.cli",
        "litestar",
        "scheduler.booking",
        "scheduler.reminders",
        "sqlalchemy",
        "redis",
    ),
    "booking": (
        "scheduler.api",
        "scheduler.app",
        "scheduler.cli",
        "litestar",
        "scheduler.reminders",
    ),
    "reminders": ("scheduler.api", "scheduler.app", "scheduler.cli", "litestar"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_core_packages_do_not_import_upper_layers() -> None:
    problems = []
    for package, forbidden in FORBIDDEN.items():
        for path in (ROOT / package).rglob("*.py"):
            for module in _imports(path):
                if module.startswith(forbidden):
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
    assert problems == []


def test_the_check_sees_imports() -> None:
    # the checker itself must be able to fail
    assert "litestar" in _imports(ROOT / "app.py")
