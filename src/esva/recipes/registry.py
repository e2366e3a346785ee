"""Named training recipes: what ``esva train --config FILE`` runs, chosen by the file's ``recipe``.

Every recipe is a run config class (``model`` / ``data`` / ``train`` sections, a
:class:`esva.recipes.config.SectionedRunConfig`) and a ``train(run, resume) -> TrainResult``
that hands the one engine (:mod:`esva.recipes.engine`) its model, loaders, loss, validation and
``save_best``. Entries are import paths so that listing the recipes imports none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esva.errors import EsvaError
from esva.settings import read_yaml

DEFAULT_RECIPE = "esva"


@dataclass(frozen=True)
class RecipeEntry:
    config: str  # "module:Class" of the run config
    train: str  # "module:function" that trains it on the engine
    what: str  # one line for ``esva train --help`` and the README


RECIPES: dict[str, RecipeEntry] = {
    "esva": RecipeEntry(
        "esva.recipes.config:RunConfig",
        "esva.recipes.train_esva:train",
        "an ESVA model on a feature store (Eq. 7)",
    ),
    "llm": RecipeEntry(
        "esva.recipes.train_llm:LLMRunConfig",
        "esva.recipes.train_llm:train_llm",
        "projectors + LoRA on a language model (esva train-llm)",
    ),
    "sync-space": RecipeEntry(
        "esva.recipes.sync_space:SyncRunConfig",
        "esva.recipes.sync_space:train",
        "the sync heads and uncertainty net behind esva align (esva/assets/sync)",
    ),
    "face-expert": RecipeEntry(
        "esva.recipes.face_expert:FaceRunConfig",
        "esva.recipes.face_expert:train",
        "the FER+ face-expression expert (esva.encoders.face_expert)",
    ),
    "explain-adapter": RecipeEntry(
        "esva.recipes.explain_adapter:ExplainRunConfig",
        "esva.recipes.explain_adapter:train",
        "the explanation adapter of esva explain on measured clips",
    ),
}


def _attr(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def recipe_entry(name: Any, source: str | Path | None = None) -> RecipeEntry:
    """The registered recipe ``name``; anything else is a one-line error listing the names."""
    if not isinstance(name, str) or name not in RECIPES:
        raise EsvaError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})", source)
    return RECIPES[name]


def recipe_config_class(name: Any, source: str | Path | None = None) -> type:
    """The run config class of the registered recipe ``name``."""
    return _attr(recipe_entry(name, source).config)


def load_run(path: str | Path, default: str = DEFAULT_RECIPE) -> tuple[str, Any]:
    """``(recipe name, run config)`` of a YAML file; without a ``recipe:`` key, ``default``.

    Relative data paths are read against the file's folder, so configs travel with data.
    """
    raw = read_yaml(Path(path))
    name = raw.get("recipe", default) if isinstance(raw, dict) else default
    return name, recipe_config_class(name, path).from_file(raw, Path(path))


def train_recipe(name: str, run: Any, resume: bool = False) -> Any:
    """Train ``run`` with the recipe ``name``; returns the engine's ``TrainResult``."""
    return _attr(recipe_entry(name).train)(run, resume=resume)
