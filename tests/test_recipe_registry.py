"""The recipe registry behind ``esva train --config``: every entry resolves, the key chooses."""

from __future__ import annotations

import inspect

import pytest

from esva.errors import EsvaError
from esva.recipes.config import SectionedRunConfig
from esva.recipes.registry import RECIPES, _attr, load_run, recipe_entry


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_resolves_to_a_config_class_and_a_trainer(name):
    entry = RECIPES[name]
    config_cls, train = _attr(entry.config), _attr(entry.train)
    assert issubclass(config_cls, SectionedRunConfig)
    assert list(inspect.signature(train).parameters)[:2] == ["run", "resume"]
    assert entry.what


def test_the_recipe_key_picks_the_config_class(tmp_path):
    (tmp_path / "a.yaml").write_text("model: {audio_dim: 32}\ndata: {root: feats}\n")
    name, run = load_run(tmp_path / "a.yaml")
    assert name == "esva" and type(run).__name__ == "RunConfig"
    assert run.data.root == str((tmp_path / "feats").resolve())  # relative to the file
    (tmp_path / "b.yaml").write_text("recipe: llm\nmodel: {tokens: 2}\ndata: {root: feats}\n")
    name, run = load_run(tmp_path / "b.yaml")
    assert name == "llm" and type(run).__name__ == "LLMRunConfig" and run.model.tokens == 2


def test_unknown_recipe_names_the_known_ones(tmp_path):
    with pytest.raises(EsvaError, match=r"unknown recipe 'nope' .*esva.*llm"):
        recipe_entry("nope", tmp_path / "x.yaml")
