"""The product never imports the demo (STYLE: the demo's parts live in ``replicator/demo``).

The Lambda zip and the container image leave ``replicator/demo`` out, so a product
module importing it would fail only once deployed. The one door is ``replicator demo``,
the CLI command that runs it, importing it lazily.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "replicator"
DEMO = PACKAGE / "demo"
CLI = PACKAGE / "cli" / "lab.py"  # where the demo command lives
pytestmark = pytest.mark.timeout(90)


def demo_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [n for n in names if n == "replicator.demo" or n.startswith("replicator.demo.")]
    return found


def test_no_product_module_imports_the_demo() -> None:
    product = [p for p in PACKAGE.rglob("*.py") if DEMO not in p.parents]
    assert len(product) > 30
    offenders = {
        str(p.relative_to(PACKAGE)): imports
        for p in product
        if (imports := demo_imports(p)) and p != CLI
    }
    assert offenders == {}


def test_the_cli_reaches_the_demo_only_inside_the_demo_command() -> None:
    tree = ast.parse(CLI.read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in top_level if "demo" in ast.unparse(n)]


def test_importing_the_product_never_imports_moto() -> None:
    modules = sorted(
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if DEMO not in p.parents and p.name != "__main__.py"
    )
    probe = "import importlib, sys\n"
    probe += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    probe += "print(sorted(n for n in sys.modules if n.split('.')[0] == 'moto'))\n"
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert answer.stdout.strip() == "[]"
