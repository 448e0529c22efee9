"""What ``configsvc serve`` imports: a node's resident memory starts with its modules."""

from __future__ import annotations

import subprocess
import sys

#: packages a node never needs (tools, plotting, browsers, test libraries)
FORBIDDEN = ("rich", "pygments", "matplotlib", "playwright", "numpy", "pytest", "hypothesis")


def test_serve_imports_no_tooling() -> None:
    probe = (
        "import sys\n"
        "from configsvc.cli import _serve_entry\n"
        "_serve_entry()\n"
        "import uvloop, httpx\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
