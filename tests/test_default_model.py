"""The default model shipped with the package: hash-checked, loads, predicts without --model."""

from __future__ import annotations

import json
import shutil

import pytest

import esva.assets
from esva.assets import DEFAULT_MODEL_SHA256, default_model_dir, verify_files
from esva.cli.main import main
from esva.errors import EsvaError
from esva.extract.provenance import extractor_for_model, read_extraction
from esva.labelsets import SER7_CLASSES
from esva.model.pooled_voice import PooledVoiceModel, load_model
from media_factory import write_voice


def _predict_json(capsys, *args: str) -> dict:
    rc = main(["predict", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_shipped_files_match_recorded_hashes_and_size():
    directory = default_model_dir()  # raises if any file differs from its recorded sha256
    assert set(DEFAULT_MODEL_SHA256) == {"config.json", "extraction.json", "model.safetensors"}
    assert all(len(sha) == 64 for sha in DEFAULT_MODEL_SHA256.values())
    assert (directory / "model.safetensors").stat().st_size <= 20 * 1024 * 1024
    card = (directory / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card.lower()


def test_loads_as_the_pooled_voice_model_over_ser7():
    model = load_model(default_model_dir())
    assert isinstance(model, PooledVoiceModel)
    assert model.config.classes == list(SER7_CLASSES)
    assert model.config.modalities == ["audio"]
    assert model.config.encoders == {"audio": "whisper-tiny"}
    assert model.config.streams == [("whisper-tiny", 5, 384)]
    assert model.config.temperature > 1  # out-of-corpus calibration softens it
    training = model.config.training
    assert set(training["corpora"]) == {"ravdess", "tess", "emovo", "ased", "nemo"}
    # the calibrated rule travels with the model and with the fusion settings
    fusion = json.loads((default_model_dir() / "fusion.json").read_text())
    assert fusion["confidence_threshold"] == training["confidence_threshold"]


def test_extracts_new_files_with_the_recorded_whisper_layer():
    """The shipped model loads through the same provenance path as any trained model."""
    directory = default_model_dir()
    model = load_model(directory)
    extraction = read_extraction(directory)
    assert extraction["encoders"]["whisper-tiny"]["options"] == {"layer": "stack"}
    assert extraction["fps"] is None and extraction["faces"] is None  # audio only
    assert not extraction["asr"]
    extractor = extractor_for_model(directory, model.config.encoders)
    assert extractor.config.audio == ["whisper-tiny"] and not extractor.config.visual
    assert extractor.config.encoder_options == {"whisper-tiny": {"layer": "stack"}}
    # The live encoder is the one the model was trained on: same weights, same layer.
    live = extractor.records["whisper-tiny"]
    recorded = extraction["encoders"]["whisper-tiny"]["record"]
    assert live["weights_sha256"] == recorded["weights_sha256"]
    assert str(extractor.encoders["whisper-tiny"].config.layer) == recorded["layer"] == "stack"


def test_predict_json_reports_the_extraction_it_used(tmp_path, capsys):
    pred = _predict_json(capsys, str(write_voice(tmp_path / "voice.wav")))
    x = pred["extraction"]
    assert list(x["encoders"]) == ["whisper-tiny"]
    assert x["encoders"]["whisper-tiny"]["options"] == {"layer": "stack"}
    assert x["fps"] is None and x["faces"] is None and x["asr"] is False
    assert pred["face_coverage"] is None  # audio file: no face to cover
    # confident follows the calibrated rule: flagged exactly when the top p is below it
    threshold = json.loads((default_model_dir() / "fusion.json").read_text())[
        "confidence_threshold"
    ]
    top = max(pred["probabilities"].values())
    assert pred["confident"] == (top >= threshold)
    assert any(f.startswith("uncertain:") for f in pred["flags"]) == (top < threshold)


def test_hash_check_refuses_a_corrupted_file(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    verify_files(copy, DEFAULT_MODEL_SHA256)  # intact copy passes
    weights = copy / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    weights.write_bytes(bytes(blob))
    with pytest.raises(EsvaError, match=r"model\.safetensors.*sha256"):
        verify_files(copy, DEFAULT_MODEL_SHA256)
    (copy / "config.json").unlink()
    with pytest.raises(EsvaError, match="missing"):
        verify_files(copy, {"config.json": DEFAULT_MODEL_SHA256["config.json"]})


def test_cli_refuses_a_damaged_install_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(esva.assets.DEFAULT_MODEL_SHA256, "model.safetensors", "0" * 64)
    rc = main(["predict", str(write_voice(tmp_path / "a.wav"))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "model.safetensors" in err and "sha256" in err


def test_predict_without_model_on_a_generated_audio_file(tmp_path, capsys):
    pred = _predict_json(capsys, str(write_voice(tmp_path / "voice.wav")))
    assert pred["label"] in SER7_CLASSES  # the fused default answers in ser7 (calm -> neutral)
    assert list(pred["probabilities"]) == list(SER7_CLASSES)
    assert abs(sum(pred["probabilities"].values()) - 1.0) < 1e-4
    assert pred["modalities"] == ["audio"] and pred["missing"] == []
    assert pred["model"].startswith("default")
    assert pred["timeline"] and pred["offset_ms"] is None  # no video stream in the model


@pytest.mark.shared
def test_predict_real_ravdess_clips(shared_data, capsys):
    """Clips the model was trained on (all 20 actors): the pipeline must reproduce the
    training features, so (nearly) all of these strong-intensity takes come out right."""
    speech = shared_data / "ravdess_speech"
    takes = {  # emotion code -> label, actors 03 (male) and 10 (female), strong intensity
        "05": "angry",
        "03": "happy",
        "04": "sad",
        "08": "surprised",
    }
    right, total = 0, 0
    for actor in ("03", "10"):
        for code, label in takes.items():
            path = speech / f"Actor_{actor}" / f"03-01-{code}-02-01-01-{actor}.flac"
            pred = _predict_json(capsys, str(path))
            right += pred["label"] == label
            total += 1
    assert right >= total - 2, f"{right}/{total} training clips predicted right"


@pytest.mark.shared
def test_predict_real_video_fuses_its_audio_track_and_face(shared_data, capsys):
    video = shared_data / "ravdess_av" / "Actor_01" / "01-01-08-02-02-02-01.mp4"
    pred = _predict_json(capsys, str(video))
    assert pred["label"] in SER7_CLASSES
    assert pred["modalities"] == ["audio", "visual"]  # the voice model and the face expert
    assert set(pred["per_modality"]) == {"voice", "face"}
    # the audio-only model cannot align; the shipped sync heads measure the offset instead,
    # and RAVDESS is recorded in sync (to about one 33 ms frame)
    assert pred["offset_ms"] is not None and abs(pred["offset_ms"]) < 100
    assert any("sync heads" in flag for flag in pred["flags"])


def test_timeline_text_merges_runs_of_one_label():
    from esva.cli.predict import _runs

    windows = [
        {"start_s": 0.0, "end_s": 2.0, "label": "calm"},
        {"start_s": 0.5, "end_s": 2.5, "label": "calm"},
        {"start_s": 1.0, "end_s": 3.0, "label": "sad"},
    ]
    assert _runs(windows) == ["0.0-2.5 s calm", "1.0-3.0 s sad"]
