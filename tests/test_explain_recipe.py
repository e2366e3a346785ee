"""The ``explain-adapter`` recipe on the engine: synthetic measured clips, the tiny random LM,
``esva train --config``; the best folder is an adapter ``esva explain`` loads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from esva.cli.main import main
from esva.errors import EsvaError
from esva.llm.adapter import STREAM_DIMS, ExplainAdapter
from esva.recipes import explain_adapter as recipe
from esva.recipes.registry import load_run

CLASSES = ["neutral", "happy", "sad", "angry"]


def _cues(k: int, face: bool) -> dict:
    voice = [
        {"name": n, "value": 1.0, "reference": 1.0, "unit": "", "difference": 0.0,
         "margin": 1.0, "direction": d}
        for n, d in (("pitch", (k % 3) - 1), ("loudness", 1 - (k % 2)), ("pace", 0),
                     ("melody", 1))
    ]  # fmt: skip
    track = None
    if face:
        track = {
            "probabilities": {"neutral": 0.2, "happy": 0.7, "sad": 0.1},
            "windows": [{"start_s": 0, "end_s": 2, "probabilities": {"happy": 0.9, "sad": 0.1}}],
            "peak_time_s": 1.2,
        }
    return {"voice": voice, "voice_reference": "the reference voice", "face": track}


def make_measures(root: Path) -> Path:
    """12 training clips (speakers s1, s2), 4 validation clips (s3), 4 test clips (s4): a voice
    mean frame whose first dimension says the class, a face token on some, the head's guess."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for k, label in enumerate(CLASSES):
        for j, (speaker, split) in enumerate(
            (("s1", "train"), ("s2", "train"), ("s1", "train"), ("s3", "val"), ("s4", "test"))
        ):
            name = f"{speaker}_{label}_{j}"
            voice = 0.3 * rng.normal(size=(1, STREAM_DIMS["voice"])).astype(np.float32)
            voice[0, k] += 2.0
            feats = {"voice": voice}
            face = j == 1
            if face:
                feats["face"] = rng.dirichlet(np.ones(8))[None].astype(np.float32)
            np.savez(root / f"{name}.npz", **feats)
            head = np.full(len(CLASSES), 0.1)
            head[(k + j) % len(CLASSES)] = 0.7  # right on some clips, wrong on others
            head = dict(zip(CLASSES, (head / head.sum()).tolist(), strict=True))
            record = {"label": label, "head": head, "head_label": max(head, key=head.get),
                      "cues": _cues(k, face), "flags": []}  # fmt: skip
            (root / f"{name}.json").write_text(json.dumps(record))
            rows.append([name, label, f"syn:{speaker}", split, "syn"])
    with open(root / "labels.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "discrete", "speaker", "split", "corpus"])
        w.writerows(rows)
    return root


def write_config(folder: Path, measures: Path, **train) -> Path:
    config = {
        "recipe": "explain-adapter",
        "model": {
            "backbone": "tiny-random-llama",
            "lora": {"r": 2, "alpha": 4},
            "max_length": 2048,
        },
        "data": {"root": str(measures), "reasoning": 0.5},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-2, "progress": False, **train},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adapter.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def measures(tmp_path_factory) -> Path:
    return make_measures(tmp_path_factory.mktemp("measures"))


def test_esva_train_builds_an_adapter_that_explain_loads(measures, tmp_path, capsys) -> None:
    config = write_config(tmp_path, measures, epochs=2)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert "best model" in capsys.readouterr().out
    history = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["epoch"] for r in history] == [1, 2]
    for r in history:
        assert np.isfinite(r["train_loss"]) and 0.0 <= r["val_lm_weighted_f1"] <= 1.0
        assert r["val_lm_weight"] in (0.0, 0.25, 0.5, 1.0, 2.0)
    # 12 recognition samples (4 of them face+voice) + a seeded half with reasoning, in
    # same-kind batches of 4: one line per optimizer step
    n_steps = len((out / "steps.jsonl").read_text().splitlines())
    run = load_run(config)[1]
    m = recipe.load_measures(run.data)
    samples = recipe.build_samples(m.records, m.splits["train"], m.classes, 0.5, 0)
    kinds = [s.kind for s in samples]
    assert kinds.count("voice") == 8 and kinds.count("face+voice") == 4
    assert 0 < kinds.count("reason") < 12
    assert n_steps == 2 * len(recipe.KindBatches(kinds, 4, 0))
    # checkpoints: only the trainable weights (projector + LoRA), not the LM
    saved = load_file(out / "checkpoint" / "model.safetensors")
    assert saved and all("lora_" in k or k.startswith("projector.") for k in saved)

    # the best folder is an explanation adapter: the loader merges its LoRA, reads its stats
    best = out / "best"
    meta = json.loads((best / "adapter.json").read_text())
    assert meta["classes"] == CLASSES and meta["trained_on"]["train"] == {"syn": 12}
    assert meta["lm_weight"] == history[meta_epoch(history) - 1]["val_lm_weight"]
    assert json.loads((best / "esva_llm.json").read_text())["config"]["autocast"] is None
    adapter = ExplainAdapter.from_pretrained(best)
    rec = m.records[m.splits["test"][0]]
    second = adapter.second_opinion(rec["features"], recipe.cue_set(rec["cues"]))
    assert list(second) == CLASSES and sum(second.values()) == pytest.approx(1.0)
    mean, _std = adapter.stats["voice"]
    assert mean.shape == (384,) and float(mean[0]) > 0.3  # training clips' mean, class 0 shifted
    # esva explain --adapter loads it (the recogniser is not used to load)
    from esva.apps.explain import CueExplainer

    explainer = CueExplainer.with_recognizer(object(), asr=False, adapter=best)
    assert explainer.adapter.lm_weight == meta["lm_weight"] and explainer.adapter.classes == CLASSES

    # the same output folder again: refused in one line, the run is not touched
    assert main(["train", "--config", str(config), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "already holds a run" in err and len(err.splitlines()) == 1


def meta_epoch(history: list[dict]) -> int:
    """The best epoch by the default monitor (val_lm_weighted_f1; the first of ties)."""
    scores = [r["val_lm_weighted_f1"] for r in history]
    return scores.index(max(scores)) + 1


def test_batches_are_one_kind_and_depend_only_on_seed_and_epoch() -> None:
    kinds = ["voice"] * 9 + ["face"] * 3 + ["reason"] * 5
    b = recipe.KindBatches(kinds, 4, seed=3)
    b.set_epoch(1)
    first = list(b)
    assert len(first) == len(b) == 3 + 1 + 2
    assert sorted(i for batch in first for i in batch) == list(range(len(kinds)))
    assert all(len({kinds[i] for i in batch}) == 1 for batch in first)
    again = recipe.KindBatches(kinds, 4, seed=3)
    again.set_epoch(1)
    assert list(again) == first
    again.set_epoch(2)
    assert list(again) != first


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"train": {"epoch": 2}}, "unknown keys ['epoch'] in 'train'"),
        ({"train": {"projector_lr": "fast"}}, "projector_lr"),
        ({"data": {"reasoning": 1.5}}, "reasoning"),
        ({"model": {"streams": {"voice": 10}}}, "model.streams must be the measured streams"),
        ({"train": {"monitor": "accuracy"}}, "monitor"),
    ],
)
def test_bad_config_is_one_line(measures, tmp_path, capsys, section, fragment) -> None:
    config = yaml.safe_load(write_config(tmp_path, measures).read_text())
    for key, values in section.items():
        config[key].update(values) if key in config else config.update({key: values})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    rc = main(["train", "--config", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and fragment in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_missing_measurement_is_one_line(measures, tmp_path) -> None:
    broken = make_measures(tmp_path / "m")
    next(broken.glob("*.npz")).unlink()
    run = load_run(write_config(tmp_path, broken))[1]
    with pytest.raises(EsvaError, match="has no measurement"):
        recipe.load_measures(run.data)


def test_shipped_config_loads() -> None:
    path = Path(__file__).resolve().parents[1] / "configs" / "explain_adapter.yaml"
    name, run = load_run(path)
    assert name == "explain-adapter" and isinstance(run, recipe.ExplainRunConfig)
    assert run.model.backbone == "smollm2-135m-instruct" and run.model.lora.r == 8
    assert run.model.streams == STREAM_DIMS and run.model.autocast == "bfloat16"
    assert run.train.lr == 3e-4 and run.train.projector_lr == 1e-3 and run.train.threads == 1


class Interrupt(Exception):
    pass


def test_resume_continues_exactly(measures, tmp_path, monkeypatch) -> None:
    """Killed after the 2nd batch of epoch 2 and resumed: the same weights and metrics as an
    uninterrupted run (the batch order depends only on (seed, epoch))."""
    from esva.llm.model import EmotionLLM

    def run_of(folder: Path):
        path = write_config(tmp_path / folder, measures, epochs=2, checkpoint_every=1)
        run = load_run(path)[1]
        run.train.out_dir = str(tmp_path / folder / "run")
        return run

    recipe.train(run_of("a"))
    run = run_of("b")
    m = recipe.load_measures(run.data)
    kinds = [s.kind for s in recipe.build_samples(m.records, m.splits["train"], m.classes, 0.5, 0)]
    n_batches = len(recipe.KindBatches(kinds, 4, 0))
    calls = {"n": 0}
    forward = EmotionLLM.forward

    def dies(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == n_batches + 3:
                raise Interrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(EmotionLLM, "forward", dies)
    with pytest.raises(Interrupt):
        recipe.train(run)
    monkeypatch.setattr(EmotionLLM, "forward", forward)
    state = json.loads((tmp_path / "b" / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["state"]["epoch"] == 1 and state["state"]["batch"] == 2  # mid-epoch
    recipe.train(run_of("b"), resume=True)
    a = load_file(tmp_path / "a" / "run" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    metrics = [
        [
            {k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (tmp_path / x / "run" / "metrics.jsonl").open()
        ]
        for x in "ab"
    ]
    assert metrics[0] == metrics[1]
    changed = run_of("b")
    changed.train.projector_lr = 5e-3
    with pytest.raises(EsvaError, match="different config"):
        recipe.train(changed, resume=True)
