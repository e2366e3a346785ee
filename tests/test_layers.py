"""The package's layering (``esva.LAYERS``): no module imports from a higher layer."""

from __future__ import annotations

import ast
from pathlib import Path

import esva

PACKAGE = Path(esva.__file__).resolve().parent
RANK = {name: i for i, layer in enumerate(esva.LAYERS) for name in layer}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``esva.*`` import in a file, lazy ones inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("esva.")]
    return found


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    tops = {t for t in tops if not t.startswith(("_", ".")) and t not in ("py",)}
    tops = {t for t in tops if (PACKAGE / t).is_dir() or (PACKAGE / f"{t}.py").is_file()}
    assert tops - set(RANK) == set(), "add new subpackages to esva.LAYERS"
    assert set(RANK) - tops == set(), "esva.LAYERS names a module that does not exist"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        own = RANK[rel.parts[0].removesuffix(".py")]
        for line, module in _imports(path):
            target = module.split(".")[1]
            if RANK.get(target, -1) > own:
                upward.append(f"{rel}:{line} imports {module}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The scanner itself: a lazy import of a higher layer inside a function is found."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from esva.cli.main import main\n    return main\n")
    assert _imports(bad) == [(2, "esva.cli.main")]
    assert RANK["cli"] > RANK["media"]
