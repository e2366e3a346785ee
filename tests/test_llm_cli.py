"""``esva train-llm`` and ``esva explain`` end to end (tiny random Llama, prosody features of
generated speech-like audio: no download), and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from esva.cli.main import main
from esva.data.sources import ClipSource

CLASSES = ["sad", "neutral", "angry"]
RATE = 16000


def voice(f0: float, loudness: float, syllables_per_s: float, seconds: float = 1.2) -> np.ndarray:
    """A harmonic "vowel" train: pitch f0, syllables as amplitude bumps, 0.2 s silences."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.cos(2 * np.pi * syllables_per_s * t)
    speech = (t > 0.2) & (t < seconds - 0.2)
    return (loudness * wave * envelope * speech).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A prosody feature store of 12 generated clips and a tiny LLM trained on it."""
    from esva.extract.pipeline import ExtractConfig
    from esva.extract.run import run_extract

    root = tmp_path_factory.mktemp("llm_cli")
    sources = []
    for k, label in enumerate(CLASSES):
        for j in range(4):
            path = root / "media" / f"{label}_{j}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, voice(110 + 50 * k + 5 * j, 0.05 + 0.1 * k, 3 + k), RATE)
            split = "val" if j == 3 else "train"
            sources.append(ClipSource(path.stem, audio=path, label=label, split=split))
    store = root / "store"
    run_extract(sources, store, ExtractConfig(audio=["prosody"], visual=[]), progress=False)
    config = root / "llm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "backbone": "tiny-random-llama",
                    "lora": {"r": 4, "alpha": 8},
                    "max_new_tokens": 24,
                },
                "data": {
                    "root": "store",
                    "streams": {"audio": "prosody"},
                    "classes": CLASSES,
                    "cues": {"voice": "prosody"},
                    "reasoning": 0.5,
                },
                "train": {"epochs": 1, "batch_size": 4, "lr": 1e-2, "progress": False},
            }
        )
    )
    assert main(["train-llm", "--config", str(config), "--out", str(root / "run")]) == 0
    return root, root / "run" / "best"


def test_train_llm_then_explain_json(trained, capsys) -> None:
    root, best = trained
    capsys.readouterr()
    wav = root / "media" / "angry_3.wav"
    assert main(["explain", str(wav), "--model", str(best), "--json", "--no-asr"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] in CLASSES
    assert isinstance(result["explanation"], str)
    assert result["streams"] == ["audio"] and result["classes"] == CLASSES
    voice_cues = result["cues"]["voice"]
    assert voice_cues["f0_hz"] == pytest.approx(225, rel=0.1)  # 110 + 50*2 + 5*3 Hz
    assert (root / "run" / "merr" / "MERR_fine_grained.json").exists()  # built for training
    meta = json.loads((best / "esva_llm_data.json").read_text())
    assert len(meta["standardize"]["audio"]["mean"]) == 10  # the prosody columns
    assert "records" not in meta  # the encoder provenance lives in extraction.json only
    extraction = json.loads((best / "extraction.json").read_text())
    assert extraction["encoders"]["prosody"]["record"]["name"] == "prosody"
    assert extraction["encoders"]["prosody"]["modality"] == "audio"
    assert result["extraction"]["encoders"]["prosody"]["modality"] == "audio"

    assert main(["explain", str(wav), "--model", str(best), "--no-asr"]) == 0
    out = capsys.readouterr().out
    assert f"{wav.name}: {result['label']}" in out


def _one_line_error(capsys, rc: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_one_line_errors(trained, tmp_path: Path, capsys) -> None:
    root, best = trained
    wav = root / "media" / "sad_0.wav"
    rc = main(["explain", str(wav), "--task", "story"])
    _one_line_error(capsys, rc, "unknown --task 'story'", "emotion, reason, face, voice")
    rc = main(["explain", str(wav), "--model", str(best), "--task", "face"])
    _one_line_error(capsys, rc, "not with --model")
    rc = main(["explain", str(tmp_path / "none.mp4"), "--model", str(best)])
    _one_line_error(capsys, rc, "file not found", "none.mp4")
    rc = main(["explain", str(wav), "--model", str(tmp_path)])
    _one_line_error(capsys, rc, "not a model folder from `esva train-llm`")
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(best, bare)
    (bare / "extraction.json").unlink()
    rc = main(["explain", str(wav), "--model", str(bare), "--no-asr"])
    _one_line_error(capsys, rc, str(bare / "extraction.json"), "--assume-default-extraction")
    rc = main(["train-llm", "--config", str(tmp_path / "missing.yaml")])
    _one_line_error(capsys, rc, "config file not found", "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"rank": 4}}))
    _one_line_error(capsys, main(["train-llm", "--config", str(bad)]), "unknown LLM config keys")
    bad.write_text(yaml.safe_dump({"model": {}, "data": {"root": str(tmp_path / "nowhere")}}))
    rc = main(["train-llm", "--config", str(bad), "--out", str(tmp_path / "r")])
    _one_line_error(capsys, rc, "feature store not found")
    rc = main(["train-llm", "--config", str(root / "llm.yaml"), "--out", str(root / "run")])
    _one_line_error(capsys, rc, "already holds a run", "--resume")
    config = str(root / "llm.yaml")
    rc = main(["train-llm", "--config", config, "--out", str(tmp_path / "y"), "--resume"])
    _one_line_error(capsys, rc, "nothing to resume")


def test_explain_flags_a_label_the_explanation_contradicts(trained, monkeypatch) -> None:
    """Recognition and reasoning are two generations: a disagreement is flagged, not hidden."""
    from esva.apps.explain import explain_file
    from esva.llm.model import EmotionLLM

    root, best = trained
    answers = iter(["angry", "Her voice is soft and slow. Therefore, it is: sad."])
    monkeypatch.setattr(EmotionLLM, "generate", lambda self, *a, **k: [next(answers)])
    result = explain_file(root / "media" / "angry_3.wav", best, asr=False)
    assert result["label"] == "angry" and result["label_from_explanation"] == "sad"
    assert any("explanation concludes 'sad'" in flag for flag in result["flags"])


def test_explain_pipeline_with_a_trained_adapter(trained, capsys) -> None:
    """``esva.pipeline("explain", model=DIR)`` is ``esva explain --model DIR``: the same JSON
    fields, a path or an array, and only the task such a model answers."""
    import esva
    from esva.apps.results import LLMExplainResult
    from esva.errors import EsvaError

    root, best = trained
    wav = root / "media" / "sad_0.wav"
    pipe = esva.pipeline("explain", model=best, asr=False)
    assert pipe.tasks == ("reason",)
    result = pipe(wav, max_new_tokens=6)
    assert isinstance(result, LLMExplainResult) and result.file == str(wav)
    capsys.readouterr()
    rc = main(["explain", str(wav), "--model", str(best), "--json", "--no-asr"])
    cli = json.loads(capsys.readouterr().out)
    assert rc == 0 and list(result.to_dict()) == list(cli)
    assert LLMExplainResult.from_dict(cli).to_dict() == cli
    samples, _ = sf.read(wav, dtype="float32")
    from_array = pipe(samples, sample_rate=RATE, max_new_tokens=6)
    assert from_array.file == "<array>" and from_array.streams == result.streams
    with pytest.raises(EsvaError, match="unknown task 'face'"):
        pipe(wav, task="face")
