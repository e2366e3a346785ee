"""Every esva name a benchmark script imports exists (benchmarks run rarely: a moved module
would otherwise be found only by whoever runs the benchmark next)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _esva_imports() -> list[tuple[str, int, str, str | None]]:
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("esva"):
                found += [(path.name, node.lineno, node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [
                    (path.name, node.lineno, a.name, None)
                    for a in node.names
                    if a.name.startswith("esva")
                ]
    return found


@pytest.mark.parametrize(("script", "line", "module", "name"), _esva_imports())
def test_benchmark_import_resolves(script, line, module, name):
    mod = importlib.import_module(module)
    if name is not None and not hasattr(mod, name):
        importlib.import_module(f"{module}.{name}")  # a submodule is fine too
    assert not module.startswith("esva.cli"), f"{script}:{line}: benchmarks import apps, not cli"
