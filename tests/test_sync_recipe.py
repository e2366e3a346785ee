"""The sync-space recipe on the engine: ``esva train --config`` on generated talking clips."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from esva.cli.main import main
from esva.recipes.registry import load_run
from esva.sync.clip_media import talking_clip
from esva.sync.controllers import load_uncertainty
from esva.sync.degrade import delay_audio
from esva.sync.estimate import estimate_from_features
from esva.sync.space import SyncSpace

SMALL = {
    "recipe": "sync-space",
    "model": {"visual": "mouth", "pixels": 8, "context": 2, "sync_dim": 8},
    "data": {"synthetic": 6, "segment_s": 2.0, "val_batches": 2},
    "train": {
        "epochs": 1,
        "steps_per_epoch": 40,
        "batch_size": 6,
        "uncertainty_epochs": 1,
        "uncertainty_steps_per_epoch": 20,
        "progress": False,
    },
}


def _config(tmp_path, **train):
    raw = json.loads(json.dumps(SMALL))
    raw["train"].update(train)
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_esva_train_runs_the_sync_recipe_and_its_best_folder_aligns(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(_config(tmp_path)), "--out", str(out)]) == 0
    assert "-> " in capsys.readouterr().out
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["state"]["epoch"] == 1 and state["state"]["step"] == 40
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert len(records) == 1 and {"train_loss", "val_loss", "val_top1"} <= set(records[0])
    assert (out / "uncertainty" / "metrics.jsonl").exists()
    space = SyncSpace.load(out / "best")  # checks the recorded sha256
    assert space.meta["recipe"]["name"] == "sync-space" and len(space.meta["training_clips"]) == 6
    net = load_uncertainty(out / "best")
    assert space.meta["uncertainty_windows"] > 0 and net is not None
    # The trained space finds a shift injected into a clip it never saw.
    clip = talking_clip(seed=100)
    feats0 = space.features(clip.audio, clip.track)
    base = estimate_from_features(feats0, space).audio_lag_ms
    for lag_ms in (-200.0, 120.0):
        audio = space.audio_features(delay_audio(clip.audio, lag_ms / 1000.0))
        est = estimate_from_features(dataclasses.replace(feats0, audio=audio), space)
        assert abs(est.audio_lag_ms - base - lag_ms) < 20.0, (lag_ms, est.audio_lag_ms, base)


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    from esva.recipes.sync_space import train

    def run(out, **train_opts):
        path = _config(tmp_path, epochs=2, steps_per_epoch=6, checkpoint_every=2, **train_opts)
        _, cfg = load_run(path)
        cfg.train.out_dir = str(tmp_path / out)
        return cfg

    straight = train(run("a"))
    embed, calls = SyncSpace.embed, {"n": 0}

    def dies(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6 + 4:  # the 4th batch of epoch 2, after a mid-epoch checkpoint
                raise Interrupt
        return embed(self, *args, **kwargs)

    monkeypatch.setattr(SyncSpace, "embed", dies)
    with pytest.raises(Interrupt):
        train(run("b"))
    monkeypatch.setattr(SyncSpace, "embed", embed)
    state = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert (state["state"]["epoch"], state["state"]["batch"]) == (1, 2)  # mid-epoch
    resumed = train(run("b"), resume=True)
    ha, hb = (json.loads((tmp_path / x / "rank0.json").read_text()) for x in "ab")
    assert ha["weights_sha256"] == hb["weights_sha256"]
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]
    assert (tmp_path / "a" / "best" / "heads.safetensors").read_bytes() == (
        tmp_path / "b" / "best" / "heads.safetensors"
    ).read_bytes()
    assert (tmp_path / "a" / "best" / "uncertainty.safetensors").read_bytes() == (
        tmp_path / "b" / "best" / "uncertainty.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("train", "stepz", 3, "unknown"),
        ("model", "visual", "lips", "visual must be one of"),
        ("train", "batch_size", "16", "batch_size must be"),
        ("data", "groups", ["ravdess", "tiktok"], "unknown clip group 'tiktok'"),
    ],
)
def test_a_bad_config_key_is_refused_in_one_line(tmp_path, capsys, section, key, value, fragment):
    raw = json.loads(json.dumps(SMALL))
    raw[section][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
