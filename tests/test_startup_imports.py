"""Start-up of ``esva predict``: a fresh process imports only what the request uses.

Each check runs a new interpreter and reads its ``sys.modules`` at the end. The heavy modules
named here each cost 0.3-5 s of a cold ``esva predict`` (measured in results/predict_speed.md):
transformers' Whisper modelling pulls in ``torch._dynamo``, ``torch.distributed.tensor``, sympy
and ``scipy.optimize``; the shipped model's Whisper encoder runs without it
(:mod:`esva.encoders.whisper_net`), and the sync space's mel filters come from
:mod:`esva.media.mel`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from media_factory import write_media

# Never needed to predict with the shipped model (audio-only Whisper features + sync space).
NEVER = [
    "transformers",
    "torch._dynamo",
    "torch.distributed.tensor",
    "sympy",
    "accelerate",
    "matplotlib",
    "sklearn",
    "pandas",
]
# Only for a video (face tracking and the audio-video offset).
VIDEO_ONLY = ["cv2", "esva.media.faces", "esva.sync.space"]


def _loaded_after(code: str, watch: list[str]) -> list[str]:
    script = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        f"print(json.dumps([m for m in {watch!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0 and "weights" in proc.stderr and "esva: error" in proc.stderr:
        pytest.skip(f"the shipped model's weights are unavailable: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _predict(path: Path) -> str:
    return (
        "from esva.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['predict', {str(path)!r}, '--json']) == 0"
    )


def test_importing_the_cli_loads_no_numerics():
    heavy = ["torch", "numpy", "transformers", "rich", "av", "cv2"]
    assert _loaded_after("import esva.cli.main", heavy) == []


def test_predict_on_audio_imports_neither_transformers_nor_video_tools(tmp_path):
    wav = write_media(tmp_path / "tone.wav", video=False, duration_s=1.5, freq=200.0)
    loaded = _loaded_after(_predict(wav), [*NEVER, *VIDEO_ONLY, "torch"])
    assert loaded == ["torch"], "torch is the model; nothing else heavy"


def test_predict_on_video_imports_no_transformers(tmp_path):
    mp4 = write_media(tmp_path / "clip.mp4", duration_s=1.5, freq=200.0)
    loaded = _loaded_after(_predict(mp4), [*NEVER, "cv2"])
    assert loaded == ["cv2"], "the face tracker's OpenCV, and none of the never-needed ones"


def test_heap_is_frozen_only_in_a_process_started_by_run(tmp_path):
    """``esva`` (``run``) freezes the loaded heap (gc.freeze) and keeps exit statuses; ``main``
    called in-process (as the tests do) leaves the garbage collector alone."""
    import gc

    from esva.cli import heap
    from esva.cli.main import main

    before = gc.get_freeze_count()
    wav = write_media(tmp_path / "tone.wav", video=False, duration_s=1.0, freq=200.0)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["predict", str(wav), "--json"]) in (0, 2)  # 2: weights unavailable
    heap.settle()
    assert gc.get_freeze_count() == before and not heap.process_entry

    code = (
        "import gc, sys\n"
        "from esva.cli import heap, main\n"
        f"sys.argv = ['esva', 'predict', {str(wav)!r}, '--json']\n"
        "try:\n"
        "    main.run()\n"
        "except SystemExit as exc:\n"
        "    print('frozen', gc.get_freeze_count() > 1000, 'status', exc.code, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if "esva: error" in proc.stderr and "weights" in proc.stderr:
        pytest.skip("the shipped model's weights are unavailable")
    assert json.loads(proc.stdout)["label"]
    assert "frozen True status 0" in proc.stderr, proc.stderr[-2000:]

    missing = subprocess.run(
        [sys.executable, "-m", "esva.cli.main", "predict", str(tmp_path / "nope.wav")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 2 and "esva: error" in missing.stderr
