"""The cores are sans-IO: only driver and storage modules may touch the world.

A core module that imports asyncio, socket, time, threading, os or the random
*module* (``random.Random`` instances are injected, never imported) breaks
determinism under the simulator. This test parses every core module's imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"asyncio", "socket", "time", "threading", "os", "random", "subprocess", "selectors"}
IO_MODULE_PREFIXES = ("driver", "storage_disk", "transport")


def core_modules() -> list[Path]:
    found = []
    for pkg in ("strong", "eventual"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if not path.stem.startswith(IO_MODULE_PREFIXES):
                found.append(path)
    return found


def forbidden_imports(source: str) -> list[str]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        hits += [n for n in names if n.split(".")[0] in FORBIDDEN]
    return hits


def test_there_are_core_modules() -> None:
    assert len(core_modules()) >= 2


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_pure(path: Path) -> None:
    assert forbidden_imports(path.read_text()) == []


def test_checker_catches_a_forbidden_import() -> None:
    assert forbidden_imports("import time\nfrom asyncio import sleep\nimport json\n") == [
        "time",
        "asyncio",
    ]
    assert forbidden_imports("from random import Random\n") == ["random"]
    assert forbidden_imports("from .random_utils import x\nimport typing\n") == []
