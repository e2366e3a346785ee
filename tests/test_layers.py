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


def _modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of everything a file in ``package`` imports, inside functions too:
    ``import a.b``; ``from a import b`` (both ``a`` and ``a.b``: ``b`` may be a module);
    relative imports resolved against ``package``; ``importlib.import_module("a.b")`` and
    ``__import__("a.b")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _package_of(path: Path) -> str:
    """``esva.apps`` for ``esva/apps/explain.py`` (the package relative imports start from)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts if rel.name == "__init__" else rel.parts[:-1]
    return ".".join(p for p in parts if p != "__init__")


def _reaches(module: str, target: str) -> bool:
    return module == target or module.startswith(target + ".")


def test_apps_never_import_recipes():
    """Inference-time code (``esva.apps``: predict, batch, explain, align, serve, the Python
    API) answers with trained models and never reaches into the training recipes: a trained
    LLM folder is loaded by ``esva.llm.trained``, cues are measured by ``esva.llm.measure``, and
    the synthetic demo (a training run) is ``esva.recipes.demo``, called by the CLI. No
    exception: the rank order alone (recipes below apps) would allow these imports."""
    found: dict[str, str] = {}  # "file:line" -> the recipe module it reaches (one per line)
    for path in sorted((PACKAGE / "apps").rglob("*.py")):
        for line, module in _modules(path, _package_of(path)):
            if _reaches(module, "esva.recipes"):
                found.setdefault(f"{path.relative_to(PACKAGE)}:{line}", module)
    assert found == {}


def test_the_apps_check_sees_every_form_of_import(tmp_path):
    """The scanner behind the apps rule: top-level, function-level, ``from esva import
    recipes``, relative and ``importlib`` imports of a recipe are all found."""
    bad = tmp_path / "m.py"
    bad.write_text(
        "import esva.recipes.engine\n"
        "from esva import recipes\n"
        "def f():\n"
        "    from esva.recipes.train_llm import load_trained\n"
        "    from ..recipes import demo\n"
        "    from . import results\n"
        "    import importlib\n"
        "    return importlib.import_module('esva.recipes.demo')\n"
    )
    modules = _modules(bad, "esva.apps")
    hits = sorted({line for line, m in modules if _reaches(m, "esva.recipes")})
    assert hits == [1, 2, 4, 5, 8]
    assert (6, "esva.apps.results") in modules and not _reaches("esva.recipesx", "esva.recipes")
    assert _package_of(PACKAGE / "apps" / "explain.py") == "esva.apps"
    assert _package_of(PACKAGE / "apps" / "__init__.py") == "esva.apps"


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
