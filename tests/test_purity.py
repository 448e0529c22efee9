"""The cores are sans-IO and stand alone (docs: ``../DESIGN``-level contract, README "Layout").

Every module of ``strong/`` and ``eventual/`` is checked, with no exceptions:

- it imports no IO or nondeterminism: asyncio, socket, time, threading, os,
  the random *module* (``random.Random`` instances are injected, never
  imported), subprocess, selectors, uuid;
- it imports nothing from ``configsvc`` (the runtime is above the cores) and
  nothing from the other core.

The runtime that drives the cores lives in ``configsvc.runtime``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORES = ("strong", "eventual")
FORBIDDEN = {
    "asyncio", "socket", "time", "threading", "os", "random", "subprocess", "selectors", "uuid",
}


def core_modules() -> list[Path]:
    return [path for pkg in CORES for path in sorted((ROOT / pkg).rglob("*.py"))]


def imported(source: str) -> list[str]:
    """Every absolute module name ``source`` imports (relative imports stay in the package)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def forbidden_imports(source: str) -> list[str]:
    return [n for n in imported(source) if n.split(".")[0] in FORBIDDEN]


def foreign_imports(source: str, package: str) -> list[str]:
    """Imports of ``configsvc`` or of the other core from a module of ``package``."""
    others = {"configsvc", *CORES} - {package}
    return [n for n in imported(source) if n.split(".")[0] in others]


def test_every_module_of_both_cores_is_checked() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in core_modules()}
    assert {"strong/replica.py", "strong/storage.py", "eventual/replica.py",
            "eventual/storage.py", "eventual/membership.py"} <= found
    assert not any("driver" in name or "storage_disk" in name for name in found)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_pure(path: Path) -> None:
    assert forbidden_imports(path.read_text()) == []


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_neither_the_service_nor_the_other_core(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    assert foreign_imports(path.read_text(), package) == []


def test_checker_catches_a_forbidden_import() -> None:
    assert forbidden_imports("import time\nfrom asyncio import sleep\nimport json\n") == [
        "time",
        "asyncio",
    ]
    assert forbidden_imports("from random import Random\n") == ["random"]
    assert forbidden_imports("from .random_utils import x\nimport typing\n") == []


def test_checker_catches_a_core_importing_upward_or_sideways() -> None:
    source = (
        "from strong.framing import frame\nimport configsvc.runtime.disklog\n"
        "from eventual.dots import VV\nimport msgpack\n"
    )
    assert foreign_imports(source, "eventual") == ["strong.framing", "configsvc.runtime.disklog"]
    assert foreign_imports(source, "strong") == ["configsvc.runtime.disklog", "eventual.dots"]
