"""The benchmark scripts: each one's --help, and tiny dry runs on generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["ravdess.py", "meld.py", "ravdess_av.py", "noise.py", "train_default_model.py",
           "whisper_base.py", "crosscorpus.py", "train_voice_model.py"]  # fmt: skip


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    proc = _run([str(BENCH / script), "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and "--help" in proc.stdout


def test_committed_folds_are_speaker_independent_and_sex_balanced():
    data = json.loads((BENCH / "folds" / "ravdess_speech_k5.json").read_text())
    tests = [set(f["test_speakers"]) for f in data["folds"]]
    assert len(tests) == 5 and all(len(t) == 4 for t in tests)
    assert set().union(*tests) == {f"Actor_{i:02d}" for i in range(1, 21)}
    for fold, test in zip(data["folds"], tests, strict=True):
        assert not test & set(fold["val_speakers"]), "validation actors must not be test actors"
        sexes = [data["speakers"][s]["sex"] for s in test]
        assert sorted(sexes) == ["female", "female", "male", "male"]
    assert sum(len(f["test_clips"]) for f in data["folds"]) == 1200


@pytest.mark.slow
def test_ravdess_dry_run_writes_its_tables(tmp_path):
    proc = _run([str(BENCH / "ravdess.py"), "--dry-run", "--work", str(tmp_path), "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "results" / "ravdess_dry.md").read_text()
    assert "ESVA (full), prosody" in report and "Confusion matrices" in report
    summary = json.loads((tmp_path / "results" / "ravdess_dry.json").read_text())
    runs = summary["variants"]["ESVA (full), prosody"]["runs"]
    assert len(runs) == 2 and {r["fold"] for r in runs} == {0, 1}
    for r in runs:
        assert abs(sum(r["msfe_weights"].values()) - 1.0) < 1e-4
    pngs = list((tmp_path / "results").glob("ravdess_dry_confusion_*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    # Resumable: a second run trains nothing again.
    again = _run(
        [str(BENCH / "ravdess.py"), "--dry-run", "--work", str(tmp_path), "--workers", "1"]
    )
    assert again.returncode == 0 and "runs to do" not in again.stdout


@pytest.mark.slow
def test_meld_dry_run(tmp_path):
    proc = _run([str(BENCH / "meld.py"), "--dry-run", "--work", str(tmp_path), "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "results" / "meld_dry.md").read_text()
    assert "minilm + logistic regression" in report and "ESVA model" in report
    summary = json.loads((tmp_path / "results" / "meld_dry.json").read_text())
    assert summary["logreg"]["test"]["n"] == 14  # 2 per class in the generated test split
