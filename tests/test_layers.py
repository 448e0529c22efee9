"""Imports point down only (DESIGN "Layout"):

    configsvc.http, lab, cli, sim  →  configsvc.node  →  configsvc.runtime  →  strong, eventual

``tests/test_purity.py`` checks the bottom (the cores). This checks the
middle: the runtime imports nothing of the service above it, and the node
knows nothing of HTTP (the HTTP layer is put on top of it by
``configsvc.http.service``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_purity import ROOT, imported

RUNTIME = sorted((ROOT / "configsvc" / "runtime").rglob("*.py"))


def configsvc_imports(path: Path) -> list[str]:
    return [n for n in imported(path.read_text()) if n.split(".")[0] == "configsvc"]


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runtime_imports_only_itself_from_the_service(path: Path) -> None:
    assert [n for n in configsvc_imports(path) if not n.startswith("configsvc.runtime")] == []


@pytest.mark.parametrize("module", ["node.py", "datadir.py", "config.py"])
def test_the_node_knows_nothing_of_http_or_what_runs_above_it(module: str) -> None:
    above = ("configsvc.http", "configsvc.lab", "configsvc.sim", "configsvc.cli", "configsvc.serve",
             "configsvc.client")
    assert [n for n in configsvc_imports(ROOT / "configsvc" / module) if n.startswith(above)] == []


def test_there_is_one_runtime() -> None:
    assert {p.name for p in RUNTIME} >= {"loop.py", "disk_storage.py", "disklog.py", "framing.py",
                                          "strong_driver.py", "eventual_driver.py", "transport.py"}
    # no driver or disk storage left anywhere else
    for pkg in ("strong", "eventual", "configsvc"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "runtime" not in path.parts and "sim" not in path.parts:
                assert "driver" not in path.stem and "disklog" not in path.stem, path


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "node.py"
    bad.write_text("from configsvc.http.app import build_app\nimport configsvc.runtime.loop\n")
    assert configsvc_imports(bad) == ["configsvc.http.app", "configsvc.runtime.loop"]
