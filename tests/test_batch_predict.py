"""``esva predict`` on many files: inputs, the MERTools CSV, failures, resuming after kill -9."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from esva.apps.batch import collect_inputs, run_batch
from esva.apps.inference import Recognizer
from esva.cli.main import main
from esva.errors import EsvaError
from media_factory import write_media

# The shipped default is fused (voice model + face expert): ser7 classes, one label per expert.
CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
HEADER = ["name", "discrete", *CLASSES, "modalities", "offset_ms", "confident", "error",
          "voice_label", "face_label", "adapted"]  # fmt: skip


@pytest.fixture(scope="module")
def shipped() -> Recognizer:
    return Recognizer.from_pretrained(None)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Three voiced sounds (one in a sub-folder), a file that is not media, and a README.

    Voice-like (a swelling vowel with vibrato), not steady tones: the fused default's energy VAD
    rightly finds no speech in a steady tone and would answer uniform probabilities."""
    folder = tmp_path_factory.mktemp("clips")
    for i, f0 in enumerate((180.0, 220.0)):
        _voice(folder / f"tone{i}.wav", 1.5, f0)
    (folder / "sub").mkdir()
    _voice(folder / "sub" / "tone2.flac", 1.0, 300.0)
    (folder / "broken.wav").write_bytes(b"not a wave file at all")
    (folder / "README.txt").write_text("not media")
    return folder


def _voice(path: Path, seconds: float, f0: float, sr: int = 16_000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 * np.hanning(len(t))
    sf.write(path, x.astype(np.float32), sr)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_inputs_from_folders_globs_and_files(clips):
    names = [p.name for p in collect_inputs([clips])]
    assert names == ["broken.wav", "tone2.flac", "tone0.wav", "tone1.wav"]  # sorted by path
    globbed = collect_inputs([str(clips / "tone*.wav"), clips / "tone0.wav"])
    assert [p.name for p in globbed] == ["tone0.wav", "tone1.wav"], "each file once"
    with pytest.raises(EsvaError, match="file not found"):
        collect_inputs([clips / "nope.wav"])
    with pytest.raises(EsvaError, match="no audio or video files match"):
        collect_inputs([str(clips / "*.mkv")])


def test_a_clash_of_stems_is_refused_before_any_work(tmp_path, clips, monkeypatch):
    other = tmp_path / "tone0.flac"
    write_media(other, video=False, duration_s=0.5)
    monkeypatch.setattr(
        "esva.apps.batch._results", lambda *a: pytest.fail("no prediction may start")
    )
    with pytest.raises(EsvaError, match="share the name 'tone0'"):
        run_batch([clips / "tone0.wav", other], out=tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_batch_csv_failures_and_exit_status(tmp_path, clips, shipped, capsys):
    out = tmp_path / "preds.csv"
    rc = main(["predict", str(clips), "--out", str(out), "--quiet"])
    assert rc == 1, "one file failed"
    err = capsys.readouterr().err
    assert "1 file(s) failed" in err and "broken.wav" in err
    with open(out, newline="") as f:
        assert next(csv.reader(f)) == HEADER
    rows = _read(out)
    assert [r["name"] for r in rows] == ["broken", "tone2", "tone0", "tone1"]
    broken = rows[0]
    assert broken["error"] and "broken.wav" in broken["error"] and broken["discrete"] == ""
    for row in rows[1:]:
        assert row["error"] == "" and row["discrete"] in CLASSES
        probs = [float(row[c]) for c in CLASSES]
        assert all(math.isfinite(p) for p in probs) and abs(sum(probs) - 1) < 1e-4
        assert row["modalities"] == "audio" and row["offset_ms"] == "", "audio: no offset"
        # the same numbers as the one-file path
        pred = shipped.predict(clips / "sub" / "tone2.flac") if row["name"] == "tone2" else None
        if pred is not None:
            assert row["discrete"] == pred.label
            assert float(row["happy"]) == pytest.approx(pred.probabilities["happy"], abs=1e-6)
    assert "nan" not in out.read_text().lower()
    assert not list(tmp_path.glob(".*")), "side files removed, no temporary left"


def test_score_reads_the_predictions_csv(tmp_path, clips, shipped, capsys):
    out = tmp_path / "preds.csv"
    good = [clips / "tone0.wav", clips / "tone1.wav"]
    summary = run_batch(good, out=out, recognizer=shipped, progress=False)
    assert not summary.failed and summary.done == 2
    labels = {r["name"]: r["discrete"] for r in _read(out)}
    gold = tmp_path / "gold.csv"
    # one right, one wrong on purpose: accuracy 0.5 shows the file was really read
    wrong = next(c for c in CLASSES if c != labels["tone1"])
    gold.write_text(f"name,discrete\ntone0,{labels['tone0']}\ntone1,{wrong}\n")
    capsys.readouterr()
    score = ["score", "mer2023", "--gold", str(gold), "--pred", str(out), "--json"]
    rc = main([*score, "--classes", "ravdess"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(0.5)


def test_rerun_skips_finished_files_and_retries_failed(tmp_path, clips, shipped):
    out = tmp_path / "p.csv"
    paths = collect_inputs([clips])
    side = tmp_path / f".{out.name}.part0.jsonl"
    seen: list[str] = []
    # a first run that stops after two files (as a kill would), leaving its side file
    with pytest.raises(KeyboardInterrupt):

        def stop_after_two(path, row):
            seen.append(Path(path).name)
            if len(seen) == 2:
                raise KeyboardInterrupt

        run_batch(paths, out=out, recognizer=shipped, progress=False, on_result=stop_after_two)
    assert not out.exists() and len(side.read_text().splitlines()) == 2
    assert seen[0] == "broken.wav"
    with open(side, "a") as f:
        f.write('{"path": "/x", "mod')  # a line torn by a kill
    again: list[str] = []
    summary = run_batch(
        paths,
        out=out,
        recognizer=shipped,
        progress=False,
        on_result=lambda p, r: again.append(Path(p).name),
    )
    # tone2 was finished: skipped; broken failed: retried
    assert again == ["broken.wav", "tone0.wav", "tone1.wav"]
    assert summary.resumed == 1 and summary.done == 3
    assert [r["name"] for r in _read(out)] == ["broken", "tone2", "tone0", "tone1"]
    assert not side.exists()


def test_usage_errors_exit_2(tmp_path, clips, capsys):
    files = [str(clips / "tone0.wav"), str(clips / "tone1.wav")]
    assert main(["predict", *files, "--json"]) == 2
    assert "one file" in capsys.readouterr().err
    assert main(["predict", str(clips / "missing.wav"), "--out", str(tmp_path / "p.csv")]) == 2


@pytest.mark.slow
def test_workers_give_the_same_csv(tmp_path, clips):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["predict", str(clips), "--out", str(one), "--quiet"]) == 1
    assert main(["predict", str(clips), "--out", str(two), "--quiet", "--workers", "2"]) == 1
    assert one.read_text() == two.read_text()


@pytest.mark.slow
def test_two_ranks_share_the_files_and_rank_0_merges(tmp_path, clips):
    out = tmp_path / "p.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", "29581", "-m", "esva.cli.main", "predict", str(clips)]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # broken.wav fails on rank 0
    # rank 1 reports its half; rank 0 its half, then the merged whole
    assert "predicted 2/2 file(s)\n" in proc.stdout, proc.stdout
    assert f"predicted 3/4 file(s) -> {out}" in proc.stdout, proc.stdout
    assert [r["name"] for r in _read(out)] == ["broken", "tone2", "tone0", "tone1"]
    assert not list(tmp_path.glob(".*")), "the ranks' side files are merged and removed"


def test_kill_9_mid_run_loses_nothing_finished(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(24):
        write_media(folder / f"a{i:02d}.wav", video=False, duration_s=2.0, freq=150.0 + 10 * i)
    out = tmp_path / "out" / "preds.csv"
    side = out.parent / f".{out.name}.part0.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "esva.cli.main", "predict", str(folder), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if side.exists() and len(side.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [json.loads(line) for line in side.read_text().splitlines() if line.endswith("}")]
    assert 3 <= len(finished) < 24, "the kill must land mid-run"
    assert not out.exists(), "no half-written CSV"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({len(finished)} from an earlier run)" in rerun.stdout, "finished files not redone"
    rows = {r["name"]: r for r in _read(out)}
    assert len(rows) == 24 and all(r["error"] == "" for r in rows.values())
    for rec in finished:  # what was finished before the kill is in the CSV as it was
        row = rows[Path(rec["path"]).stem]
        assert row["discrete"] == rec["row"]["discrete"]
        assert float(row["happy"]) == pytest.approx(rec["row"]["probabilities"][2], abs=1e-6)
    assert not list(out.parent.glob(".*")), "no side or temporary file left"


def test_predict_on_audio_imports_only_what_it_needs(clips):
    """Start-up: no plotting, no face detector, no OpenCV, no scikit-learn for an audio file."""
    code = (
        "import contextlib, io, json, sys\n"
        "from esva.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['predict', {str(clips / 'tone0.wav')!r}, '--json']) == 0\n"
        "heavy = ['matplotlib', 'sklearn', 'cv2', 'esva.media.faces', 'esva.sync.space']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_adapt_reads_ten_voices_against_the_batch_and_is_off_by_default(tmp_path, shipped, capsys):
    """The shipped voice has a batch-adapted head (esva.apps.adapt): with --adapt and ten clips
    with a voice, every row is read against the batch and says so; by default (it would hurt a
    folder of one emotion) each clip keeps the answer ``esva predict`` gives it alone."""
    if not shipped.model.adaptable:
        pytest.skip("the shipped voice model has no batch-adapted head")
    folder = tmp_path / "ten"
    folder.mkdir()
    for i in range(10):
        _voice(folder / f"v{i}.wav", 1.0, 140.0 + 25 * i)
    adapted_csv, alone_csv = tmp_path / "adapted.csv", tmp_path / "alone.csv"
    assert main(["predict", str(folder), "--out", str(adapted_csv), "--quiet", "--adapt"]) == 0
    assert "adapted: each voice read against this batch of 10 clips" in capsys.readouterr().out
    assert main(["predict", str(folder), "--out", str(alone_csv), "--quiet"]) == 0
    assert "adapted" not in capsys.readouterr().out
    adapted, alone = _read(adapted_csv), _read(alone_csv)
    assert {r["adapted"] for r in adapted} == {"yes"} and {r["adapted"] for r in alone} == {"no"}
    first = shipped.predict(folder / "v0.wav")
    assert float(alone[0]["happy"]) == pytest.approx(first.probabilities["happy"], abs=1e-6)
    p_adapted = np.array([[float(r[c]) for c in CLASSES] for r in adapted])
    p_alone = np.array([[float(r[c]) for c in CLASSES] for r in alone])
    assert np.allclose(p_adapted.sum(1), 1, atol=1e-4) and np.isfinite(p_adapted).all()
    assert np.abs(p_adapted - p_alone).max() > 1e-3, "the batch changed the answers"


def test_rows_keep_the_voice_statistics_only_when_adapting(clips, shipped):
    """Without --adapt a row (and its side-file line) carries no 15 KB of statistics."""
    from esva.apps.batch import prediction_row

    pred = shipped.predict(clips / "tone0.wav")
    plain = prediction_row(pred, shipped.classes)
    kept = prediction_row(pred, shipped.classes, adapt=True)
    assert "voice_statistics" not in plain and "experts_in" not in plain
    assert len(kept["voice_statistics"]) > 1000 and set(kept["experts_in"]) == {"voice"}
