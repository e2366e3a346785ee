"""The shipped example configs parse into valid run configs."""

from pathlib import Path

import pytest

from esva.train.config import RunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_load(path):
    run = RunConfig.load(path)
    assert run.model.modalities and run.train.epochs > 0
