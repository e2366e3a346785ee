"""The training recipe: a short run, exact resume, refusals, and DDP on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esva.errors import EsvaError
from esva.model import ESVAModel
from esva.model.config import ESVAConfig
from esva.recipes.config import DataConfig, RunConfig, TrainConfig
from esva.recipes.train_esva import train, weights_sha256


def _run(corpus: Path, out: Path, epochs: int, **train_kw) -> RunConfig:
    return RunConfig(
        model=ESVAConfig(
            audio_dim=32, visual_dim=16, text_dim=16, hidden_dim=16, sync_dim=8, use_valence=True
        ),
        data=DataConfig(root=str(corpus)),
        train=TrainConfig(
            epochs=epochs, batch_size=8, out_dir=str(out), progress=False, cpu=True, **train_kw
        ),
    )


def test_short_run_writes_log_checkpoint_and_best_model(small_corpus, tmp_path):
    result = train(_run(small_corpus, tmp_path / "run", epochs=2))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    record = json.loads(lines[-1])
    assert {"train_total", "train_emo", "train_align", "val_weighted_f1", "msfe_weights"} <= set(
        record
    )
    model = ESVAModel.from_pretrained(result.best_dir)
    assert model.config.encoders == {"audio": "audio", "visual": "visual", "text": "text"}
    assert (tmp_path / "run" / "checkpoint" / "trainer_state.json").exists()
    assert not list((tmp_path / "run").glob(".*tmp*")), "no temporary checkpoint left behind"


def test_resume_continues_exactly(small_corpus, tmp_path):
    straight = train(_run(small_corpus, tmp_path / "a", epochs=3, balanced_sampling=True))
    train(_run(small_corpus, tmp_path / "b", epochs=1, balanced_sampling=True))
    resumed = train(
        _run(small_corpus, tmp_path / "b", epochs=3, balanced_sampling=True), resume=True
    )
    ha = json.loads((tmp_path / "a" / "rank0.json").read_text())["weights_sha256"]
    hb = json.loads((tmp_path / "b" / "rank0.json").read_text())["weights_sha256"]
    assert ha == hb, "a resumed run must end with the same weights, bit for bit"
    assert [h["train_total"] for h in straight.history] == [
        h["train_total"] for h in resumed.history
    ]
    assert weights_sha256(ESVAModel.from_pretrained(straight.best_dir)) == weights_sha256(
        ESVAModel.from_pretrained(resumed.best_dir)
    )


class Interrupt(Exception):
    pass


def test_resume_mid_epoch_continues_exactly(small_corpus, tmp_path, monkeypatch):
    train(_run(small_corpus, tmp_path / "a", epochs=2, checkpoint_every=1))
    steps = (tmp_path / "a" / "steps.jsonl").read_text().splitlines()
    per_epoch = len(steps) // 2
    forward, calls = ESVAModel.forward, {"n": 0}

    def dies(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == per_epoch + 2:  # the 2nd batch of epoch 2
                raise Interrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ESVAModel, "forward", dies)
    with pytest.raises(Interrupt):
        train(_run(small_corpus, tmp_path / "b", epochs=2, checkpoint_every=1))
    monkeypatch.setattr(ESVAModel, "forward", forward)
    state = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert (state["state"]["epoch"], state["state"]["batch"]) == (1, 1)  # mid-epoch checkpoint
    resumed = train(_run(small_corpus, tmp_path / "b", epochs=2, checkpoint_every=1), True)
    ha, hb = (json.loads((tmp_path / x / "rank0.json").read_text()) for x in "ab")
    assert ha["weights_sha256"] == hb["weights_sha256"]
    straight = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").open()]
    assert [r["train_total"] for r in straight] == [r["train_total"] for r in resumed.history]
    assert (tmp_path / "b" / "steps.jsonl").read_text() == "\n".join(steps) + "\n"


def test_schedule_is_transformers_warmup_cosine(small_corpus, tmp_path):
    import torch
    from transformers import get_cosine_schedule_with_warmup

    result = train(_run(small_corpus, tmp_path / "s", epochs=3, warmup_epochs=2.0, lr=0.01))
    steps = (tmp_path / "s" / "steps.jsonl").read_text().splitlines()
    per_epoch = len(steps) // 3
    assert len(steps) == 3 * per_epoch > 0
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    reference = get_cosine_schedule_with_warmup(optimizer, 2 * per_epoch, 3 * per_epoch)
    expected = []
    for _ in range(3):
        for _ in range(per_epoch):
            optimizer.step()
            reference.step()
        expected.append(reference.get_last_lr()[0])
    # Mid warm-up, at its end, and at the end of training (cosine down to zero).
    assert [r["lr"] for r in result.history] == pytest.approx(expected, abs=1e-12)
    assert expected[0] == pytest.approx(0.005) and expected[2] == pytest.approx(0.0, abs=1e-12)


def test_early_stopping_is_optional(small_corpus, tmp_path):
    # lr ~ 0: the validation score never improves after epoch 1, so patience 1 stops at epoch 2.
    stopped = train(_run(small_corpus, tmp_path / "p", epochs=4, patience=1, lr=1e-12))
    assert stopped.epochs_run == 2 and stopped.best_epoch == 1
    kept_on = train(_run(small_corpus, tmp_path / "q", epochs=4, patience=None, lr=1e-12))
    assert kept_on.epochs_run == 4


def test_refusals(small_corpus, tmp_path):
    train(_run(small_corpus, tmp_path / "r", epochs=1))
    with pytest.raises(EsvaError, match="already holds a run"):
        train(_run(small_corpus, tmp_path / "r", epochs=1))
    changed = _run(small_corpus, tmp_path / "r", epochs=2)
    changed.train.lr = 0.5
    with pytest.raises(EsvaError, match="different config"):
        train(changed, resume=True)
    with pytest.raises(EsvaError, match="nothing to resume"):
        train(_run(small_corpus, tmp_path / "fresh", epochs=1), resume=True)


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(small_corpus, tmp_path):
    cfg = _run(small_corpus, tmp_path / "ddp", epochs=2)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        "-m",
        "esva.cli.main",
        "train",
        "--config",
        str(config),
    ]
    proc = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert proc.stdout.count("best model") == 1, "only the main process reports"


def test_corpus_speaker_balanced_epoch_of_a_given_size(small_corpus, tmp_path, monkeypatch):
    """The run's sampler draws each corpus, then each speaker inside it, equally often although
    their clip counts differ fourfold, and an epoch is the asked-for 12 draws."""
    import csv

    import numpy as np

    from esva.recipes import train_esva
    from esva.recipes.sampler import EpochSampler

    # An unbalanced corpus: corpus "a" with spk00 (12 clips) and spk01 (3), corpus "b" with
    # spk02 and spk03 (3 each); spk04 validates, spk05 tests.
    with (small_corpus / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept, seen = [], {}
    for row in rows:
        k = int(row["speaker"][3:])
        seen[k] = seen.get(k, 0) + 1
        if k == 0 or k >= 4 or seen[k] <= 3:
            row["speaker"] = f"{'a' if k < 2 else 'b'}:{row['speaker']}"
            row["split"] = "train" if k < 4 else ("val" if k == 4 else "test")
            kept.append(row)
    labels = tmp_path / "unbalanced.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)

    made: list[EpochSampler] = []

    class Recording(EpochSampler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.groups, self.drawn = kwargs.get("groups"), []
            made.append(self)

        def __iter__(self):
            order = list(super().__iter__())
            self.drawn.append(order)
            return iter(order)

    monkeypatch.setattr(train_esva, "EpochSampler", Recording)
    run = _run(small_corpus, tmp_path / "g", epochs=1, corpus_speaker_balanced=True, epoch_size=12)
    run.data.labels = str(labels)
    result = train(run)
    assert len(result.history) == 1 and ESVAModel.from_pretrained(result.best_dir)

    (sampler,) = made
    assert sampler.groups is not None, "the run did not ask for corpus/speaker balance"
    assert [len(order) for order in sampler.drawn] == [12]  # the epoch the run trained on
    speakers = [speaker for _, speaker in sampler.groups]
    counts = {s: speakers.count(s) for s in set(speakers)}
    assert counts == {"a:spk00": 12, "a:spk01": 3, "b:spk02": 3, "b:spk03": 3}
    share = {s: float(sampler.weights[[x == s for x in speakers]].sum()) for s in counts}
    assert share == pytest.approx(dict.fromkeys(counts, 0.25))  # corpus 1/2, speaker 1/2 of it
    draws = []
    for epoch in range(400):  # many epochs' draws: the frequencies follow the weights
        sampler.set_epoch(epoch)
        draws += [speakers[i] for i in EpochSampler.__iter__(sampler)]
    freq = {s: draws.count(s) / len(draws) for s in counts}
    assert max(abs(f - 0.25) for f in freq.values()) < 0.03, freq
    assert np.isclose(sum(freq.values()), 1.0)
