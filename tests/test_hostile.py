"""A hostile corpus through every command: broken media, bad options, bad tables and configs,
damaged model folders, crafted archives.

Each case runs ``esva.cli.main.main`` in-process and asserts the contract of the CLI:

* the exit status (2 for a user error, 0 for a documented degraded result);
* on error, stderr ends with ONE line ``esva: error: ...`` naming the file and the problem;
* no "Traceback" anywhere, no NaN/Infinity in stdout or in any CSV/JSON written;
* no input file modified (sha256 before/after) and no half-written ``*.tmp`` left behind.

Everything is generated in tmp folders at test time. Expensive things are built once: the
media files (module), a tiny trained ESVA model on the synthetic corpus (module), and the
shipped model's first load (the first ``predict`` case).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from esva.cli.main import main
from media_factory import tone, write_media, write_multichannel

RATE = 16000
NON_FINITE = re.compile(r"\bNaN\b|\bnan\b|-?Infinity\b|\binf\b")


# ------------------------------------------------------------------------------ the corpus
@dataclass
class Corpus:
    root: Path  # media and tables (inputs: hashed before and after every case)
    model: Path  # a tiny trained ESVA model folder (its best/)
    features: Path  # the synthetic feature dataset it was trained on

    def __call__(self, name: str) -> str:
        return str(self.root / name)


def _wav(path: Path, samples: np.ndarray, subtype: str = "FLOAT") -> None:
    sf.write(path, samples, RATE, subtype=subtype)


def _npz_with_object(path: Path, **arrays: object) -> None:
    np.savez(path, **{k: np.array(v, dtype=object) for k, v in arrays.items()})


class _Marker:
    """Pickles to ``pathlib.Path.touch(<marker>)``: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    with open(path, "w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, small_corpus) -> Corpus:
    root = tmp_path_factory.mktemp("hostile")
    voice = tone(1.0, RATE, 220.0, 0.3)
    _wav(root / "good.wav", voice, "PCM_16")
    write_media(root / "good.mp4", duration_s=1.0)
    write_media(root / "silent.mp4", duration_s=1.0, audio=False)
    glitch = voice.copy()
    glitch[100:110] = np.inf
    glitch[500] = np.nan
    _wav(root / "glitch.wav", glitch)
    broken = voice.copy()
    broken[::2] = np.nan
    _wav(root / "broken_all.wav", broken)
    (root / "zero.wav").write_bytes(b"")
    (root / "zero.mp4").write_bytes(b"")
    rng = np.random.default_rng(0)
    (root / "random.mp4").write_bytes(rng.bytes(4096))
    (root / "random.wav").write_bytes(rng.bytes(4096))
    (root / "text.wav").write_text("this is not audio\n")
    data = (root / "good.mp4").read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 3])
    # 8 and more channels used to crash the decoder (SIGSEGV) and, uploaded, the server.
    write_multichannel(root / "ch8.wav", 8)
    write_multichannel(root / "ch16.wav", 16)
    write_multichannel(root / "ch8.flac", 8, "flac")
    write_multichannel(root / "ch8.mp4", 8, "aac", video=True)
    shutil.copy(root / "good.wav", root / "wav_as.mp4")
    (root / "folder.mp4").mkdir()
    shutil.copy(root / "good.wav", root / ("x" * 240 + ".wav"))
    shutil.copy(root / "good.wav", os.fsencode(root) + b"/bad\xff.wav")
    # extract folders: a name clash, a 240-char stem and broken files beside good ones
    clash = root / "clash"
    clash.mkdir()
    shutil.copy(root / "good.mp4", clash / "random.mp4")
    shutil.copy(root / "good.wav", clash / "random.wav")
    shutil.copy(root / "good.wav", clash / ("y" * 240 + ".wav"))
    shutil.copy(root / "random.wav", clash / "noise.wav")
    shutil.copy(root / "zero.wav", clash / "empty.wav")
    nan_folder = root / "nan_folder"
    nan_folder.mkdir()
    shutil.copy(root / "glitch.wav", nan_folder / "glitch.wav")
    shutil.copy(root / "broken_all.wav", nan_folder / "broken_all.wav")
    # tables
    _write_csv(root / "gold.csv", [["name", "discrete"], ["a", "happy"], ["b", "sad"]])
    _write_csv(root / "pred.csv", [["name", "discrete"], ["a", "happy"], ["b", "happy"]])
    (root / "bom.csv").write_bytes("\ufeffname,discrete\na,happy\nb,sad\n".encode())
    _write_csv(root / "columns.csv", [["id", "label"], ["a", "happy"]])
    _write_csv(root / "dup.csv", [["name", "discrete"], ["a", "happy"], ["a", "sad"]])
    _write_csv(root / "unknown.csv", [["name", "discrete"], ["a", "elated"], ["b", "sad"]])
    (root / "latin1.csv").write_bytes("name,discrete\nä,happy\nb,sad\n".encode("latin-1"))
    (root / "header_only.csv").write_text("name,discrete\n")
    (root / "empty.csv").write_text("")
    _write_csv(
        root / "valence.csv",
        [["name", "discrete", "valence"], ["a", "happy", "nan"], ["b", "sad", "1"]],
    )
    _write_csv(root / "ov_gold.csv", [["name", "openset"], ["a", "['happy']"]])
    _write_csv(root / "clips_cols.csv", [["file", "label"], ["good.wav", "happy"]])
    _write_csv(
        root / "clips_dup.csv", [["path", "label"], ["good.wav", "happy"], ["good.wav", "sad"]]
    )
    _write_csv(
        root / "clips_missing.csv", [["path", "label"], ["good.wav", "happy"], ["gone.wav", "sad"]]
    )
    (root / "clips_latin1.csv").write_bytes("path,label\ngood.wav,fröhlich\n".encode("latin-1"))
    (root / "clips_bom.csv").write_bytes("\ufeffpath,label\ngood.wav,happy\n".encode())
    # configs
    (root / "bad.yaml").write_text("model: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "latin1.yaml").write_bytes("model: {name: \xe9}\n".encode("latin-1"))
    (root / "unknown_key.yaml").write_text(yaml.safe_dump({"model": {}, "bogus": 1}))
    (root / "no_data.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"audio_dim": 32},
                "data": {"root": str(root / "nowhere")},
                "train": {"epochs": 1},
            }
        )
    )
    (root / "epochs_text.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"audio_dim": 32},
                "data": {"root": str(small_corpus)},
                "train": {"epochs": "two"},
            }
        )
    )
    (root / "valid.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"audio_dim": 32},
                "data": {"root": str(small_corpus)},
                "train": {"epochs": 1},
            }
        )
    )
    (root / "monitor.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"audio_dim": 32},
                "data": {"root": str(small_corpus)},
                "train": {"monitor": "bogus"},
            }
        )
    )
    # archives
    wheel = root / "evil_wheel"
    wheel.mkdir()
    _npz_with_object(
        wheel / "wheel_mapping.npz",
        format_mapping=_Marker(root / "PWNED"),
        raw_mapping={},
        wheel_map_whole={},
    )
    garbage = root / "garbage_wheel"
    garbage.mkdir()
    (garbage / "wheel_mapping.npz").write_bytes(rng.bytes(2048))
    (garbage / "wheel1.xlsx").write_bytes(rng.bytes(2048))
    partial = root / "partial_wheel"
    partial.mkdir()
    _npz_with_object(partial / "wheel_mapping.npz", format_mapping={}, raw_mapping={})
    listy = root / "listy_wheel"
    listy.mkdir()
    _npz_with_object(
        listy / "wheel_mapping.npz", format_mapping={"a": 1}, raw_mapping={}, wheel_map_whole={}
    )
    with zipfile.ZipFile(root / "evil_synonyms.zip", "w") as archive:
        path = root / "a.npy"
        np.save(path, np.array(_Marker(root / "PWNED_OV"), dtype=object), allow_pickle=True)
        archive.write(path, "a.npy")
        path.unlink()
    (root / "random.zip").write_bytes(rng.bytes(1024))
    (root / "random.npz").write_bytes(rng.bytes(1024))
    model = _train_tiny_model(tmp_path_factory.mktemp("tiny_model"), small_corpus)
    _damaged_models(root, model)
    return Corpus(root=root, model=model, features=small_corpus)


def _train_tiny_model(folder: Path, features: Path) -> Path:
    config = folder / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "audio_dim": 32,
                    "visual_dim": 16,
                    "text_dim": 16,
                    "hidden_dim": 16,
                    "sync_dim": 8,
                    "use_valence": True,
                },
                "data": {"root": str(features)},
                "train": {"epochs": 1, "batch_size": 16, "progress": False, "cpu": True},
            }
        )
    )
    assert main(["train", "--config", str(config), "--out", str(folder / "run")]) == 0
    return folder / "run" / "best"


def _damaged_models(root: Path, model: Path) -> None:
    from safetensors.torch import load_file, save_file

    for name in ("no_weights", "no_config", "bad_json", "bad_weights", "nan_weights", "shape"):
        shutil.copytree(model, root / f"model_{name}")
    (root / "model_no_weights" / "model.safetensors").unlink()
    (root / "model_no_config" / "config.json").unlink()
    (root / "model_bad_json" / "config.json").write_text("{not json")
    weights = root / "model_bad_weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    state = load_file(str(model / "model.safetensors"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].clone().fill_(float("nan"))
    save_file(state, str(root / "model_nan_weights" / "model.safetensors"))
    state = load_file(str(model / "model.safetensors"))
    state[first] = state[first][:1].clone()
    save_file(state, str(root / "model_shape" / "model.safetensors"))
    # config.json that cannot be read as a file: a symlink to itself, a folder
    for name in ("config_loop", "config_dir"):
        shutil.copytree(model, root / f"model_{name}")
        (root / f"model_{name}" / "config.json").unlink()
    (root / "model_config_loop" / "config.json").symlink_to("config.json")
    (root / "model_config_dir" / "config.json").mkdir()
    (root / "llm_empty").mkdir()
    (root / "llm_garbage").mkdir()
    (root / "llm_garbage" / "esva_llm.json").write_text("{broken")
    (root / "llm_garbage" / "adapter_model.safetensors").write_bytes(b"\x00" * 64)


# ------------------------------------------------------------------------------ the contract
def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _outputs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".jsonl")]


@dataclass
class Case:
    command: str
    argv: Callable[[Corpus, Path], list[str]]
    rc: int
    fragments: tuple[str, ...] = ()  # in the error line (rc 2) or in stdout (rc 0)
    xfail: str | None = None  # another engineer's in-flight work fixes it
    check: Callable[[Corpus, Path, str], None] | None = None  # extra assertions


def _no_marker(c: Corpus, tmp: Path, out: str) -> None:
    assert not (c.root / "PWNED").exists() and not (c.root / "PWNED_OV").exists()


def _json_flags(*needles: str) -> Callable[[Corpus, Path, str], None]:
    def check(c: Corpus, tmp: Path, out: str) -> None:
        flags = " ".join(json.loads(out)["flags"])
        for needle in needles:
            assert needle in flags, flags

    return check


def _clash_store(c: Corpus, tmp: Path, out: str) -> None:
    summary = json.loads(out)
    entries = [json.loads(p.read_text()) for p in (tmp / "store" / "manifest").glob("*.json")]
    names = {e["clip"] for e in entries}
    assert len(names) == 5 and all(len(n.encode()) <= 96 for n in names), names
    assert summary["done"] == 3 and len(summary["failed"]) == 2, summary
    failed = {e["clip"]: e["reason"] for e in entries if e["status"] == "failed"}
    assert any("empty" in r for r in failed.values()), failed


def _nan_store(c: Corpus, tmp: Path, out: str) -> None:
    """The glitchy clip is extracted (repaired, finite features); the NaN one is a failure."""
    from safetensors.torch import load_file

    summary = json.loads(out)
    assert summary["done"] == 1 and [f["clip"] for f in summary["failed"]] == ["broken_all"]
    assert "not finite" in summary["failed"][0]["reason"]
    for path in (tmp / "store").rglob("*.safetensors"):
        for tensor in load_file(path).values():
            assert tensor.is_floating_point() is False or bool(tensor.isfinite().all()), path


P = "predict"
A = "align"
E = "extract"
T = "train"
V = "evaluate"
S = "score"
X = "explain"
D = "demo"

PROSODY = ["--audio", "prosody", "--visual", "none", "--quiet"]

CASES: dict[str, Case] = {
    # --- predict (the shipped model unless --model) ------------------------------------------
    "predict-zero-byte": Case(P, lambda c, t: [P, c("zero.mp4")], 2, ("zero.mp4", "empty")),
    "predict-random-bytes": Case(P, lambda c, t: [P, c("random.mp4")], 2, ("random.mp4",)),
    "predict-text-as-wav": Case(P, lambda c, t: [P, c("text.wav")], 2, ("text.wav",)),
    # A folder is a batch input now; an empty one is a usage error naming it.
    "predict-directory": Case(
        P, lambda c, t: [P, c("folder.mp4")], 2, ("folder.mp4", "no audio or video files")
    ),
    "predict-missing": Case(P, lambda c, t: [P, c("gone.mp4")], 2, ("gone.mp4", "not found")),
    "predict-truncated": Case(P, lambda c, t: [P, c("trunc.mp4")], 2, ("trunc.mp4",)),
    "predict-nan-wav": Case(P, lambda c, t: [P, c("broken_all.wav")], 2, ("not finite",)),
    "predict-glitch-wav": Case(
        P,
        lambda c, t: [P, c("glitch.wav"), "--json"],
        0,
        check=_json_flags("audio-damaged"),
    ),
    "predict-wav-named-mp4": Case(P, lambda c, t: [P, c("wav_as.mp4"), "--json"], 0),
    "predict-silent-video-without-face": Case(
        P, lambda c, t: [P, c("silent.mp4")], 2, ("silent.mp4", "no usable audio, face")
    ),
    "predict-8-channel-wav": Case(P, lambda c, t: [P, c("ch8.wav"), "--json"], 0),
    "predict-16-channel-wav": Case(P, lambda c, t: [P, c("ch16.wav"), "--json"], 0),
    "predict-8-channel-flac": Case(P, lambda c, t: [P, c("ch8.flac"), "--json"], 0),
    "predict-8-channel-aac-mp4": Case(P, lambda c, t: [P, c("ch8.mp4"), "--json"], 0),
    "predict-audio-random": Case(
        P, lambda c, t: [P, c("silent.mp4"), "--audio", c("random.wav")], 2, ("random.wav",)
    ),
    "predict-plot-is-input": Case(
        P, lambda c, t: [P, c("good.mp4"), "--plot", c("good.mp4")], 2, ("overwrite the input",)
    ),
    "predict-plot-is-audio": Case(
        P,
        lambda c, t: [P, c("silent.mp4"), "--audio", c("good.wav"), "--plot", c("good.wav")],
        2,
        ("overwrite the input",),
    ),
    "predict-plot-directory": Case(
        P, lambda c, t: [P, c("good.wav"), "--plot", str(t)], 2, ("--plot", "directory")
    ),
    "predict-plot-txt": Case(
        P, lambda c, t: [P, c("good.wav"), "--plot", str(t / "x.txt")], 2, (".png",)
    ),
    "predict-plot-parent-is-file": Case(
        P,
        lambda c, t: [P, c("good.wav"), "--plot", c("good.wav") + "/x.png"],
        2,
        ("not a folder",),
    ),
    "predict-plot-non-utf8-input": Case(
        P,
        lambda c, t: [
            P,
            os.fsdecode(os.fsencode(c.root) + b"/bad\xff.wav"),
            "--plot",
            str(t / "p.png"),
        ],
        0,
    ),
    "predict-model-missing": Case(
        P, lambda c, t: [P, c("good.wav"), "--model", str(t / "none")], 2, ("not found",)
    ),
    "predict-model-no-weights": Case(
        P,
        lambda c, t: [P, c("good.wav"), "--model", c("model_no_weights")],
        2,
        ("model.safetensors",),
    ),
    "predict-model-no-config": Case(
        P, lambda c, t: [P, c("good.wav"), "--model", c("model_no_config")], 2, ("config.json",)
    ),
    "predict-model-bad-json": Case(
        P, lambda c, t: [P, c("good.wav"), "--model", c("model_bad_json")], 2, ("config.json",)
    ),
    "predict-model-config-symlink-loop": Case(
        P,
        lambda c, t: [P, c("good.wav"), "--model", c("model_config_loop")],
        2,
        ("config.json",),
    ),
    "predict-model-config-is-folder": Case(
        P,
        lambda c, t: [P, c("good.wav"), "--model", c("model_config_dir")],
        2,
        ("config.json", "folder"),
    ),
    "predict-model-truncated-weights": Case(
        P,
        lambda c, t: [P, c("good.wav"), "--model", c("model_bad_weights")],
        2,
        ("model.safetensors",),
    ),
    "predict-model-nan-weights": Case(
        P, lambda c, t: [P, c("good.wav"), "--model", c("model_nan_weights")], 2, ("NaN",)
    ),
    "predict-model-wrong-shape": Case(
        P, lambda c, t: [P, c("good.wav"), "--model", c("model_shape")], 2, ("do not fit",)
    ),
    # --- align ----------------------------------------------------------------------------------
    "align-zero-byte": Case(A, lambda c, t: [A, c("zero.mp4")], 2, ("zero.mp4", "empty")),
    "align-random-bytes": Case(A, lambda c, t: [A, c("random.mp4")], 2, ("random.mp4",)),
    "align-audio-only": Case(A, lambda c, t: [A, c("good.wav")], 2, ("good.wav",)),
    "align-no-face": Case(A, lambda c, t: [A, c("good.mp4"), "--detector", "haar"], 2, ("face",)),
    "align-huge-range": Case(
        A, lambda c, t: [A, c("good.mp4"), "--max-offset-ms", "1e9"], 2, ("--max-offset-ms",)
    ),
    "align-negative-range": Case(
        A, lambda c, t: [A, c("good.mp4"), "--max-offset-ms", "-5"], 2, ("--max-offset-ms",)
    ),
    "align-nan-range": Case(
        A, lambda c, t: [A, c("good.mp4"), "--max-offset-ms", "nan"], 2, ("--max-offset-ms",)
    ),
    "align-zero-window": Case(
        A, lambda c, t: [A, c("good.mp4"), "--window-s", "0"], 2, ("--window-s",)
    ),
    "align-huge-window": Case(
        A, lambda c, t: [A, c("good.mp4"), "--window-s", "1e6"], 2, ("--window-s",)
    ),
    "align-bad-detector": Case(
        A, lambda c, t: [A, c("good.mp4"), "--detector", "yolo"], 2, ("yolo",)
    ),
    "align-plot-txt": Case(
        A, lambda c, t: [A, c("good.mp4"), "--plot", str(t / "x.txt")], 2, (".png",)
    ),
    "align-plot-is-input": Case(
        A, lambda c, t: [A, c("good.mp4"), "--plot", c("good.mp4")], 2, ("overwrite the input",)
    ),
    "align-plot-directory": Case(
        A, lambda c, t: [A, c("good.mp4"), "--plot", str(t)], 2, ("directory",)
    ),
    "align-audio-zero-byte": Case(
        A, lambda c, t: [A, c("silent.mp4"), "--audio", c("zero.wav")], 2, ("zero.wav",)
    ),
    # --- extract --------------------------------------------------------------------------------
    "extract-fps-zero": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "s"), "--fps", "0"],
        2,
        ("--fps",),
    ),
    "extract-fps-negative": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "s"), "--fps", "-5"],
        2,
        ("--fps",),
    ),
    "extract-fps-nan": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "s"), "--fps", "nan"],
        2,
        ("--fps",),
    ),
    "extract-workers-zero": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "s"), "--workers", "0"],
        2,
        ("--workers",),
    ),
    "extract-out-is-file": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", c("good.wav"), *PROSODY],
        2,
        ("good.wav", "not a folder"),
    ),
    "extract-clash-long-broken": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "store"), *PROSODY[:-1], "--json"],
        0,
        check=_clash_store,
    ),
    "extract-nan-audio": Case(
        E,
        lambda c, t: [
            E,
            "--data",
            c("nan_folder"),
            "--out",
            str(t / "store"),
            *PROSODY[:-1],
            "--json",
        ],
        0,
        check=_nan_store,
    ),
    "extract-csv-columns": Case(
        E,
        lambda c, t: [E, "--data", c("clips_cols.csv"), "--out", str(t / "s"), *PROSODY],
        2,
        ("clips_cols.csv", "columns"),
    ),
    "extract-csv-duplicates": Case(
        E,
        lambda c, t: [E, "--data", c("clips_dup.csv"), "--out", str(t / "s"), *PROSODY],
        2,
        ("clips_dup.csv", "duplicate"),
    ),
    "extract-csv-latin1": Case(
        E,
        lambda c, t: [E, "--data", c("clips_latin1.csv"), "--out", str(t / "s"), *PROSODY],
        2,
        ("clips_latin1.csv",),
    ),
    "extract-csv-empty": Case(
        E,
        lambda c, t: [E, "--data", c("empty.csv"), "--out", str(t / "s"), *PROSODY],
        2,
        ("empty.csv",),
    ),
    "extract-csv-bom": Case(
        E, lambda c, t: [E, "--data", c("clips_bom.csv"), "--out", str(t / "s"), *PROSODY], 0
    ),
    "extract-csv-missing-file": Case(
        E,
        lambda c, t: [
            E,
            "--data",
            c("clips_missing.csv"),
            "--out",
            str(t / "s"),
            *PROSODY[:-1],
            "--json",
        ],
        0,
        ("gone.wav",),
    ),
    "extract-data-missing": Case(
        E,
        lambda c, t: [E, "--data", str(t / "nowhere"), "--out", str(t / "s"), *PROSODY],
        2,
        ("nowhere",),
    ),
    "extract-bad-encoder": Case(
        E,
        lambda c, t: [
            E,
            "--data",
            c("clash"),
            "--out",
            str(t / "s"),
            "--audio",
            "bogus",
            "--visual",
            "none",
        ],
        2,
        ("bogus",),
    ),
    "extract-bad-faces": Case(
        E,
        lambda c, t: [E, "--data", c("clash"), "--out", str(t / "s"), "--faces", "yolo"],
        2,
        ("--faces",),
    ),
    "extract-no-encoders": Case(
        E,
        lambda c, t: [
            E,
            "--data",
            c("clash"),
            "--out",
            str(t / "s"),
            "--audio",
            "none",
            "--visual",
            "none",
        ],
        2,
        ("no encoders",),
    ),
    # --- train ----------------------------------------------------------------------------------
    "train-config-missing": Case(
        T, lambda c, t: [T, "--config", str(t / "none.yaml")], 2, ("none.yaml",)
    ),
    "train-config-bad-yaml": Case(T, lambda c, t: [T, "--config", c("bad.yaml")], 2, ("bad.yaml",)),
    "train-config-list": Case(T, lambda c, t: [T, "--config", c("list.yaml")], 2, ("list.yaml",)),
    "train-config-latin1": Case(
        T, lambda c, t: [T, "--config", c("latin1.yaml")], 2, ("latin1.yaml",)
    ),
    "train-config-unknown-key": Case(
        T, lambda c, t: [T, "--config", c("unknown_key.yaml")], 2, ("bogus",)
    ),
    "train-data-missing": Case(
        T, lambda c, t: [T, "--config", c("no_data.yaml"), "--out", str(t / "r")], 2, ("nowhere",)
    ),
    "train-config-is-media": Case(
        T, lambda c, t: [T, "--config", c("random.wav")], 2, ("random.wav",)
    ),
    "train-epochs-text": Case(
        T,
        lambda c, t: [T, "--config", c("epochs_text.yaml"), "--out", str(t / "r")],
        2,
        ("epochs",),
    ),
    "train-monitor-bogus": Case(
        T,
        lambda c, t: [T, "--config", c("monitor.yaml"), "--out", str(t / "r")],
        2,
        ("monitor",),
    ),
    "train-epochs-negative": Case(
        T,
        lambda c, t: [T, "--config", c("valid.yaml"), "--out", str(t / "r"), "--epochs", "-1"],
        2,
        ("epochs",),
    ),
    "train-out-is-file": Case(
        T,
        lambda c, t: [T, "--config", c("valid.yaml"), "--out", c("good.wav")],
        2,
        ("good.wav",),
    ),
    # --- evaluate -------------------------------------------------------------------------------
    "evaluate-happy": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(c.model),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
            "--split",
            "all",
            "--json",
        ],
        0,
    ),
    "evaluate-model-missing": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(t / "none"),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
        ],
        2,
        ("not found",),
    ),
    "evaluate-model-truncated": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            c("model_bad_weights"),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
        ],
        2,
        ("model.safetensors",),
    ),
    "evaluate-model-nan": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            c("model_nan_weights"),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
        ],
        2,
        ("NaN",),
    ),
    "evaluate-data-missing": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(c.model),
            "--data",
            str(t / "nowhere"),
            "--out",
            str(t / "e"),
        ],
        2,
        ("nowhere",),
    ),
    "evaluate-out-is-file": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(c.model),
            "--data",
            str(c.features),
            "--out",
            c("good.wav"),
        ],
        2,
        ("not a folder",),
    ),
    "evaluate-out-is-model": Case(
        V,
        lambda c, t: [V, "--model", str(c.model), "--data", str(c.features), "--out", str(c.model)],
        2,
        ("input folder",),
    ),
    "evaluate-bad-split": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(c.model),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
            "--split",
            "bogus",
        ],
        2,
        ("bogus",),
    ),
    "evaluate-labels-missing": Case(
        V,
        lambda c, t: [
            V,
            "--model",
            str(c.model),
            "--data",
            str(c.features),
            "--out",
            str(t / "e"),
            "--labels",
            "none.csv",
        ],
        2,
        ("none.csv",),
    ),
    # --- score ----------------------------------------------------------------------------------
    "score-happy": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("gold.csv"),
            "--pred",
            c("pred.csv"),
            "--classes",
            "happy,sad",
            "--json",
        ],
        0,
    ),
    "score-bom": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("bom.csv"),
            "--pred",
            c("pred.csv"),
            "--classes",
            "happy,sad",
            "--json",
        ],
        0,
    ),
    "score-gold-missing": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", str(t / "none.csv"), "--pred", c("pred.csv")],
        2,
        ("none.csv",),
    ),
    "score-wrong-columns": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("columns.csv"), "--pred", c("pred.csv")],
        2,
        ("columns.csv",),
    ),
    "score-duplicates": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("dup.csv"), "--pred", c("pred.csv")],
        2,
        ("dup.csv",),
    ),
    "score-unknown-class": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("unknown.csv"),
            "--pred",
            c("pred.csv"),
            "--classes",
            "happy,sad",
        ],
        2,
        ("elated",),
    ),
    "score-latin1": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("latin1.csv"), "--pred", c("pred.csv")],
        2,
        ("latin1.csv",),
    ),
    "score-header-only": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("header_only.csv"), "--pred", c("pred.csv")],
        2,
        ("header_only.csv",),
    ),
    "score-empty": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("empty.csv"), "--pred", c("pred.csv")],
        2,
        ("empty.csv",),
    ),
    "score-nan-valence": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("valence.csv"), "--pred", c("pred.csv")],
        2,
        ("valence",),
    ),
    "score-gold-is-media": Case(
        S,
        lambda c, t: [S, "mer2023", "--gold", c("random.wav"), "--pred", c("pred.csv")],
        2,
        ("random.wav",),
    ),
    "score-confusion-is-gold": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("gold.csv"),
            "--pred",
            c("pred.csv"),
            "--confusion",
            c("gold.csv"),
        ],
        2,
        ("overwrite the input",),
    ),
    "score-confusion-directory": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("gold.csv"),
            "--pred",
            c("pred.csv"),
            "--confusion",
            str(t),
        ],
        2,
        ("directory",),
    ),
    "score-confusion-txt": Case(
        S,
        lambda c, t: [
            S,
            "mer2023",
            "--gold",
            c("gold.csv"),
            "--pred",
            c("pred.csv"),
            "--confusion",
            str(t / "c.txt"),
        ],
        2,
        (".png",),
    ),
    "score-ov-synonyms-random": Case(
        S,
        lambda c, t: [
            S,
            "ov",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--synonyms",
            c("random.zip"),
        ],
        2,
        ("random.zip",),
    ),
    "score-ov-synonyms-pickle": Case(
        S,
        lambda c, t: [
            S,
            "ov",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--synonyms",
            c("evil_synonyms.zip"),
        ],
        2,
        ("evil_synonyms.zip",),
        check=_no_marker,
    ),
    "score-wheel-pickle-exploit": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            c("evil_wheel"),
            "--mapping",
            "mer2026",
        ],
        2,
        ("wheel_mapping.npz", "not plain data"),
        check=_no_marker,
    ),
    "score-wheel-npz-random": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            c("garbage_wheel"),
            "--mapping",
            "mer2026",
        ],
        2,
        ("wheel_mapping.npz",),
    ),
    "score-wheel-npz-missing-key": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            c("partial_wheel"),
            "--mapping",
            "mer2026",
        ],
        2,
        ("wheel_map_whole",),
    ),
    "score-wheel-npz-wrong-types": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            c("listy_wheel"),
            "--mapping",
            "mer2026",
        ],
        2,
        ("wheel_mapping.npz",),
    ),
    "score-wheel-xlsx-random": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            c("garbage_wheel"),
        ],
        2,
        ("garbage_wheel",),
    ),
    "score-wheel-dir-missing": Case(
        S,
        lambda c, t: [
            S,
            "wheel",
            "--gold",
            c("ov_gold.csv"),
            "--pred",
            c("ov_gold.csv"),
            "--wheel-dir",
            str(t / "none"),
        ],
        2,
        ("none",),
    ),
    # --- demo -----------------------------------------------------------------------------------
    "demo-out-is-file": Case(D, lambda c, t: [D, "--out", c("good.wav")], 2, ("not a folder",)),
    # --- explain --------------------------------------------------------------------------------
    "explain-bad-task": Case(X, lambda c, t: [X, c("good.wav"), "--task", "story"], 2, ("--task",)),
    "explain-model-empty": Case(
        X, lambda c, t: [X, c("good.wav"), "--model", c("llm_empty")], 2, ("llm_empty",)
    ),
    "explain-model-garbage": Case(
        X, lambda c, t: [X, c("good.wav"), "--model", c("llm_garbage")], 2, ("llm_garbage",)
    ),
    "explain-media-random": Case(
        X, lambda c, t: [X, c("random.mp4"), "--model", c("llm_empty")], 2
    ),
    "explain-media-missing": Case(
        X, lambda c, t: [X, str(t / "none.mp4"), "--model", c("llm_empty")], 2
    ),
    "explain-model-is-file": Case(
        X, lambda c, t: [X, c("good.wav"), "--model", c("good.wav")], 2, ("good.wav",)
    ),
}


def _params():
    for name, case in CASES.items():
        marks = [pytest.mark.xfail(strict=False, reason=case.xfail)] if case.xfail else []
        yield pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_hostile_case(name: str, corpus: Corpus, tmp_path: Path, capsys) -> None:
    case = CASES[name]
    argv = case.argv(corpus, tmp_path)
    before = _hashes(corpus.root)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == case.rc, f"exit {rc}, expected {case.rc}; stderr: {err.strip()}"
    if rc == 2:
        lines = err.strip().splitlines()
        errors = [line for line in lines if line.startswith("esva: error:")]
        assert len(errors) == 1 and lines == errors, err
        for fragment in case.fragments:
            assert fragment in errors[0], errors[0]
    else:
        for fragment in case.fragments:
            assert fragment in out, out
    assert not NON_FINITE.search(out), out
    for path in _outputs(tmp_path):
        assert not NON_FINITE.search(path.read_text(errors="replace")), path
    assert _hashes(corpus.root) == before, "an input file was modified"
    leftovers = [p for p in [*tmp_path.rglob("*.tmp"), *corpus.root.rglob("*.tmp")]]
    assert not leftovers, leftovers
    if case.check is not None:
        case.check(corpus, tmp_path, out)


def test_the_hostile_corpus_covers_every_command() -> None:
    by_command: dict[str, int] = {}
    for case in CASES.values():
        by_command[case.command] = by_command.get(case.command, 0) + 1
    assert len(CASES) >= 60
    assert set(by_command) == {P, A, E, T, V, S, X, D}, by_command


# ------------------------------------------------------------------------------ beyond the table
def test_second_extract_into_a_locked_store(corpus: Corpus, tmp_path: Path, capsys, monkeypatch):
    """Two runs into one store: the second stops with one line naming the lock."""
    from esva.extract import run

    monkeypatch.setattr(run, "LOCK_WAIT_S", 0.3)
    store = tmp_path / "store"
    with run.store_lock(store):
        rc = main([E, "--data", corpus("clash"), "--out", str(store), *PROSODY])
        err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("esva: error:") and len(err.splitlines()) == 1, err
    assert ".esva-extract.lock" in err and str(store) in err
    assert not (store / "manifest").exists(), "the second run must not touch the store"
    # The lock dies with its holder: the next run goes ahead.
    assert main([E, "--data", corpus("clash"), "--out", str(store), *PROSODY]) == 0


def test_real_clip_huge_range_and_haar_are_flagged(shared_data: Path, capsys) -> None:
    """An in-sync clip: a range past half the clip is clamped, Haar's jumpy windows flagged."""
    clip = shared_data / "av_sync" / "pc-avs" / "00010.mp4"
    capsys.readouterr()
    rc = main([A, str(clip), "--detector", "haar", "--max-offset-ms", "5000", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and "Traceback" not in err
    result = json.loads(out)
    flags = " ".join(result["flags"])
    assert "clamped" in flags and result["max_offset_ms"] <= 0.5 * 4.3 * 1000 + 1
    assert "disagree" in flags, flags


def test_window_flags() -> None:
    from esva.sync.estimate import ClipAlignConfig, _window_flags

    config = ClipAlignConfig()
    assert _window_flags([10.0, 20.0, -10.0, 15.0], 12.0, 5000.0, config) == []
    flagged = _window_flags([10.0, 400.0, -300.0, 250.0], 12.0, 5000.0, config)
    assert flagged and "disagree" in flagged[0]
    short = _window_flags([10.0, None], 12.0, 1200.0, config)
    assert short and "too short" in short[0]


def test_npz_reader_matches_numpy_on_plain_data(tmp_path: Path) -> None:
    """The pickle-free reader gives what np.load(allow_pickle=True) gives for plain data."""
    from esva.evaluate.npz_data import load_npz_data

    value = {"a": ["x", "y"], "b": {"c": [1, 2.5, None, True]}, "d": ("t", b"u")}
    _npz_with_object(tmp_path / "m.npz", m=value)
    assert load_npz_data(tmp_path / "m.npz", ("m",)) == {"m": value}


def test_real_wheel_npz_without_unpickling(shared_data: Path) -> None:
    from esva.evaluate.npz_data import load_npz_data

    path = shared_data / "mer_reference" / "emotion_wheel" / "wheel_mapping.npz"
    keys = ("format_mapping", "raw_mapping", "wheel_map_whole")
    ours = load_npz_data(path, keys)
    with np.load(path, allow_pickle=True) as official:  # the official file, trusted here only
        theirs = {k: official[k].item() for k in keys}
    assert ours == theirs
    assert len(ours["format_mapping"]) == 7356


def test_output_file_check() -> None:
    from esva.errors import EsvaError
    from esva.io import check_output_file

    with pytest.raises(EsvaError, match="too long"):
        check_output_file("/tmp/" + "z" * 250 + ".png", suffixes=(".png",))


def test_write_json_refuses_nan(tmp_path: Path) -> None:
    from esva.io import write_json

    with pytest.raises(ValueError, match=r"\$\.scores\[1\]"):
        write_json(tmp_path / "x.json", {"scores": [1.0, float("nan")]}, strict=True)
    assert not list(tmp_path.iterdir()), "nothing written, not even a temporary file"


def test_remove_stale_temps_spares_live_writers(tmp_path: Path) -> None:
    import subprocess
    import sys

    from esva.io import atomic_write, remove_stale_temps

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs: its temporary files are orphans
    orphan = tmp_path / f".x.json.pid{proc.pid}.abc123.tmp"
    orphan.write_text("{half")
    orphan_dir = tmp_path / f".ckpt.pid{proc.pid}.def456.tmp"
    orphan_dir.mkdir()
    live = tmp_path / f".y.json.pid{os.getpid()}.ghi789.tmp"
    live.write_text("{being written")
    (tmp_path / "keep.tmp").write_text("not ours")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([orphan, orphan_dir])
    assert live.exists() and (tmp_path / "keep.tmp").exists()
    with atomic_write(tmp_path / "z.json") as handle:  # our own temp names match the pattern
        handle.write("{}")
        names = [p.name for p in tmp_path.glob(".z.json.*.tmp")]
        assert len(names) == 1 and f".pid{os.getpid()}." in names[0], names


# ------------------------------------------------------------------------------ the server
def _raw(port: int, method: str, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory):
    """esva serve with its work in a spawned worker process (the stand-in service decodes with
    the real decoder and aborts on a marked file)."""
    from crash_service import CrashService
    from esva.apps.serve import create_app
    from serve_client import ThreadServer

    app = create_app(service_factory=CrashService, max_upload_mb=5)
    with ThreadServer(app) as srv:
        yield srv, app


def _upload_root_empty(app) -> bool:
    return not any(app.state.upload_root.iterdir())


def test_server_survives_an_8_channel_file_and_a_crashing_worker(crash_server, corpus):
    from crash_service import CRASH_MARK
    from serve_client import post_files, request

    srv, app = crash_server
    good = Path(corpus("good.wav")).read_bytes()
    url = srv.url + "/api/predict"
    for name in ("ch8.wav", "ch16.wav", "ch8.flac", "ch8.mp4"):
        status, body = post_files(url, {"file": (name, Path(corpus(name)).read_bytes())})
        assert status == 200 and body["samples"] > 15_000, (name, body)
        assert request(srv.url + "/api/health") == (200, {"status": "ok"})
    first_pid = body["pid"]
    assert first_pid != os.getpid()  # the work runs in another process
    status, body = post_files(url, {"file": ("boom.wav", good + CRASH_MARK)})
    assert status == 500, body
    assert "boom.wav" in body["error"] and "crashed" in body["error"]
    assert "Traceback" not in body["error"] and "/" not in body["error"]
    assert _upload_root_empty(app)  # the upload of the crashed request is gone
    assert request(srv.url + "/api/health") == (200, {"status": "ok"})
    status, body = post_files(url, {"file": ("good.wav", good)})
    assert status == 200 and body["label"] == "happy", body
    assert body["pid"] != first_pid  # a fresh worker replaced the dead one
    assert _upload_root_empty(app)
    # A crash while the headers are read (the sniff runs in the worker too).
    status, body = post_files(url, {"file": ("probe.wav", good + b"PROBE")})
    assert status == 500 and "probe.wav" in body["error"], body
    assert _upload_root_empty(app)
    assert request(srv.url + "/api/health") == (200, {"status": "ok"})
    status, body = post_files(url, {"file": ("good.wav", good)})
    assert status == 200, body


def test_server_head_health_host_check_and_no_cdn_docs(crash_server):
    srv, _ = crash_server
    assert _raw(srv.port, "HEAD", "/api/health")[0] == 200
    for host in ("localhost", f"127.0.0.1:{srv.port}", "[::1]:8080"):
        assert _raw(srv.port, "GET", "/api/health", host)[0] == 200, host
    status, body = _raw(srv.port, "GET", "/api/health", "evil.example:7860")
    assert status == 400 and b"evil.example" in body and b"not served" in body
    assert _raw(srv.port, "GET", "/api/docs")[0] == 404  # Swagger UI would load a CDN script
    status, body = _raw(srv.port, "GET", "/api/openapi.json")
    assert status == 200 and b"cdn" not in body.lower()
    status, body = _raw(srv.port, "GET", "/")
    assert status == 200 and b"cdn." not in body.lower()


def test_server_allow_host_option() -> None:
    from esva.apps.serve import create_app
    from serve_client import ThreadServer
    from test_serve import FakeService

    app = create_app(service=FakeService(), allowed_hosts=("127.0.0.1", "esva.lan"))
    with ThreadServer(app) as srv:
        assert _raw(srv.port, "GET", "/api/health", "esva.lan:80")[0] == 200
        assert _raw(srv.port, "GET", "/api/health", "localhost")[0] == 400
    app = create_app(service=FakeService(), allowed_hosts=("*",))
    with ThreadServer(app) as srv:
        assert _raw(srv.port, "GET", "/api/health", "anything.example")[0] == 200


def test_server_explain_without_cached_lm_is_503(tmp_path, monkeypatch) -> None:
    """No LM weights in the cache: /api/info says explain is unavailable, /api/explain is a 503
    with a plain message (no server path)."""
    from esva.apps import serve as serve_mod
    from serve_client import ThreadServer, post_files, request
    from test_serve import FakeService

    monkeypatch.setenv("ESVA_CACHE", str(tmp_path / "empty-cache"))
    assert serve_mod.lm_unavailable() == serve_mod.NO_LM_WEIGHTS

    class Service(FakeService):
        recognizer = object()

    app = serve_mod.create_app(service=Service(), default_explain=True)
    with ThreadServer(app) as srv:
        info = request(srv.url + "/api/info")[1]
        assert info["explain"] is False and "weights" in info["explain_unavailable"]
        status, body = post_files(srv.url + "/api/explain", {"file": ("a.wav", b"RIFF")})
        assert status == 503 and "esva weights pull" in body["error"], body
        assert str(tmp_path) not in body["error"] and "/" not in body["error"].split("(")[0]


def test_serve_busy_port_is_one_line(capsys) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        capsys.readouterr()
        rc = main(["serve", "--port", str(port), "--no-explain"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("esva: error:") and len(err.splitlines()) == 1, err
    assert f"port {port}" in err and "in use" in err


def test_serve_bad_model_folder_is_one_line(corpus, capsys, monkeypatch) -> None:
    """esva serve --model with config.json a symlink loop: one line, exit 2, port released."""
    from serve_client import free_port

    capsys.readouterr()
    rc = main(["serve", "--model", corpus("model_config_loop"), "--port", str(free_port())])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "config.json" in err, err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ messages
def test_a_1_fps_video_is_not_said_to_never_overlap() -> None:
    """A face track at 1 fps over the audio: too sparse to follow the lips, which is what the
    flag says (it used to claim that the audio and the face never overlap)."""
    from types import SimpleNamespace

    from esva.media.types import AudioClip
    from esva.sync.estimate import _undefined_reason

    audio = AudioClip(samples=tone(5.0, RATE), sample_rate=RATE, start_s=0.0)
    sparse = SimpleNamespace(timestamps_s=np.arange(0.0, 5.0, 1.0), mask=np.ones(5, bool))
    reason = _undefined_reason(SimpleNamespace(audio=audio, track=sparse))
    assert "never overlap" not in reason and "too few face frames" in reason and "1" in reason
    faceless = SimpleNamespace(timestamps_s=np.arange(0.0, 5.0, 1.0), mask=np.zeros(5, bool))
    assert "no face" in _undefined_reason(SimpleNamespace(audio=audio, track=faceless))
    later = SimpleNamespace(timestamps_s=np.arange(10.0, 15.0, 0.04), mask=np.ones(125, bool))
    assert "never overlap" in _undefined_reason(SimpleNamespace(audio=audio, track=later))


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_a_crashing_file_is_one_failed_row(corpus, tmp_path, monkeypatch, workers):
    """A file that kills its worker process is one failed row; the others are predicted."""
    from crash_service import CRASH_MARK, CrashBatchWorker
    from esva.apps import batch

    monkeypatch.setattr(batch, "BatchWorker", CrashBatchWorker)
    files = tmp_path / "in"
    files.mkdir()
    good = Path(corpus("good.wav")).read_bytes()
    (files / "a_good.wav").write_bytes(good)
    (files / "b_boom.wav").write_bytes(good + CRASH_MARK)
    shutil.copy(corpus("ch8.wav"), files / "c_ch8.wav")
    (files / "d_good.wav").write_bytes(good)
    out = tmp_path / "p.csv"
    paths = batch.collect_inputs([files])
    summary = batch.run_batch(paths, out=out, workers=workers, progress=False)
    assert [Path(f).name for f, _ in summary.failed] == ["b_boom.wav"]
    assert "worker process died" in summary.failed[0][1]
    with open(out, newline="") as handle:
        rows = {r["name"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"a_good", "b_boom", "c_ch8", "d_good"}
    assert all(rows[n]["error"] == "" for n in ("a_good", "c_ch8", "d_good"))


def test_batch_out_where_no_file_can_be_made(corpus, capsys) -> None:
    capsys.readouterr()
    rc = main([P, corpus("good.wav"), corpus("ch8.wav"), "--out", "/proc/x.csv"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "/proc/x.csv" in err, err
    assert "cannot create files" in err


def test_output_folder_probe_with_a_refusing_mkstemp(tmp_path, monkeypatch) -> None:
    """A folder that refuses new files although os.access says yes (root, immutable folders)."""
    import tempfile

    from esva.errors import EsvaError
    from esva.io import check_output_file

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(EsvaError, match="cannot create files in folder"):
        check_output_file(tmp_path / "x.csv", suffixes=(".csv",))


# ------------------------------------------------------------------------------ the cache
def _immutable(folder: Path) -> bool:
    """chattr +i: read-only even for root (chmod is not, and the tests run as root)."""
    import subprocess

    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def immutable_dir(tmp_path):
    import subprocess

    folder = tmp_path / "readonly"
    folder.mkdir()
    if not _immutable(folder):
        pytest.skip("chattr +i is not available here (needs root and a supporting file system)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=False)


def _cache_case(corpus, capsys, monkeypatch, **env: str) -> str:
    monkeypatch.delenv("ESVA_CACHE", raising=False)
    monkeypatch.delenv("ESVA_OFFLINE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    rc = main(["weights", "pull", "fer-mini-xception"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("esva: error:"), err
    return lines[0]


def test_cache_on_an_immutable_folder(corpus, capsys, monkeypatch, immutable_dir) -> None:
    line = _cache_case(corpus, capsys, monkeypatch, ESVA_CACHE=str(immutable_dir))
    assert "weights cache" in line and str(immutable_dir) in line and "ESVA_CACHE" in line


def test_cache_home_immutable_without_esva_cache(corpus, capsys, monkeypatch, immutable_dir):
    line = _cache_case(corpus, capsys, monkeypatch, HOME=str(immutable_dir))
    assert "weights cache" in line and "HOME" in line


def test_cache_is_a_file(corpus, capsys, monkeypatch, tmp_path) -> None:
    cache = tmp_path / "cache-file"
    cache.write_text("not a folder")
    line = _cache_case(corpus, capsys, monkeypatch, ESVA_CACHE=str(cache))
    assert "is a file, not a folder" in line and str(cache) in line


def test_cache_permission_error_simulated(corpus, capsys, monkeypatch, tmp_path) -> None:
    """Where chattr is missing: mkdir refusing as a read-only folder does."""

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    line = _cache_case(corpus, capsys, monkeypatch, ESVA_CACHE=str(tmp_path / "c"))
    assert "Permission denied" in line and "set ESVA_CACHE to a writable folder" in line


def test_offline_refusal_says_nothing_of_fetching_again(tmp_path, capsys, monkeypatch, caplog):
    """A corrupted entry with ESVA_OFFLINE: one refusal, no 'fetching them again' first."""
    from esva.weights.cache import cached_path

    monkeypatch.setenv("ESVA_CACHE", str(tmp_path))
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    target = cached_path("fer-mini-xception")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"damaged")
    capsys.readouterr()
    rc = main(["weights", "pull", "fer-mini-xception"])
    out, err = capsys.readouterr()
    assert rc == 2 and "ESVA_OFFLINE" in err and "corrupted" in err, err
    assert "fetching them again" not in out + err + caplog.text


def test_worker_pool_replaces_a_worker_killed_between_tasks() -> None:
    """A worker killed while idle (the OOM killer, kill -9): the next task still runs."""
    import signal
    import time

    from crash_service import CrashService
    from esva.apps.workers import WorkerPool

    pool = WorkerPool(CrashService)
    try:
        assert pool.call("describe")["name"] == "crash-test"
        for pid in list(pool._executor._processes):  # the live worker(s)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)  # let the executor notice
        assert pool.call("describe")["name"] == "crash-test"
        assert pool.crashes >= 1
    finally:
        pool.close()
