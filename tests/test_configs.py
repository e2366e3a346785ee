"""The shipped example configs parse into valid run configs (ESVA runs and LLM runs)."""

from pathlib import Path

import pytest
import yaml

from esva.recipes.config import RunConfig
from esva.recipes.train_llm import LLMRunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _is_llm(path: Path) -> bool:
    model = yaml.safe_load(path.read_text()).get("model") or {}
    return "backbone" in model


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_load(path):
    if _is_llm(path):
        run = LLMRunConfig.load(path)
        assert run.train.epochs > 0
    else:
        run = RunConfig.load(path)
        assert run.model.modalities and run.train.epochs > 0
