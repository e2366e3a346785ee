"""The Python API (``esva.pipeline``): arrays answer as the same audio in a file does through
``esva predict``, bytes and paths work, bad inputs are one line, the typed results round-trip
and their ``to_dict()`` has the CLI's JSON fields."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import esva
from esva.apps.pipeline import AlignPipeline, EmotionPipeline, ExplainPipeline
from esva.apps.results import AlignResult, EmotionResult, ExplainResult, explain_result
from esva.cli.main import main
from esva.errors import EsvaError


def _voice(seconds: float = 2.5, sr: int = 16_000) -> np.ndarray:
    """A voiced, vowel-like sound with vibrato (as media_factory.write_voice)."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 160 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 * np.hanning(len(t))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def emotion() -> EmotionPipeline:
    return esva.pipeline("emotion")


@pytest.fixture(scope="module")
def voice_file(tmp_path_factory) -> tuple[np.ndarray, Path]:
    x = _voice()
    path = tmp_path_factory.mktemp("voice") / "voice.wav"
    sf.write(path, x, 16_000, subtype="FLOAT")  # float WAV: the file holds the array exactly
    return x, path


def _cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def _assert_same_probabilities(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert list(a) == list(b)
    assert max(abs(a[k] - b[k]) for k in a) <= tol, (a, b)


def test_waveform_equals_esva_predict_on_the_file(emotion, voice_file, capsys) -> None:
    x, path = voice_file
    result = emotion(x, sample_rate=16_000)
    assert isinstance(result, EmotionResult) and result.file == "<array>"
    cli = _cli_json(capsys, "predict", str(path), "--json")
    assert set(result.to_dict()) == set(cli)  # the CLI's JSON fields, no more, no fewer
    assert result.label == cli["label"]
    _assert_same_probabilities(result.probabilities, cli["probabilities"])
    assert len(result.timeline) == len(cli["timeline"])
    for ours, theirs in zip(result.timeline, cli["timeline"], strict=True):
        _assert_same_probabilities(ours["probabilities"], theirs["probabilities"])
    assert result.modalities == cli["modalities"] and result.duration_s == cli["duration_s"]


def test_stereo_and_other_rates_are_read_like_a_file(emotion, tmp_path) -> None:
    """(channels, n) at 48 kHz: averaged to mono and resampled as the decoder does a file."""
    mono = _voice(sr=48_000)
    stereo = np.stack([mono, 0.5 * mono])
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo.T, 48_000, subtype="FLOAT")
    ours, theirs = emotion(stereo, sample_rate=48_000), emotion(path)
    _assert_same_probabilities(ours.probabilities, theirs.probabilities, 1e-4)


def test_path_and_bytes(emotion, voice_file) -> None:
    _, path = voice_file
    from_path = emotion(str(path))
    assert from_path.file == str(path)
    before = set(Path(tempfile.gettempdir()).glob("esva-input-*"))
    from_bytes = emotion(path.read_bytes())
    assert from_bytes.file == "<bytes>"
    assert set(Path(tempfile.gettempdir()).glob("esva-input-*")) == before  # removed after
    assert not any("esva-input-" in f for f in from_bytes.flags)
    _assert_same_probabilities(from_bytes.probabilities, from_path.probabilities, 0.0)
    named = emotion(path.read_bytes(), name="upload.wav")
    assert named.file == "upload.wav"


def test_bytes_of_an_audio_only_mp4_are_read_as_audio(emotion, tmp_path) -> None:
    from media_factory import write_media

    path = write_media(tmp_path / "voice.mp4", video=False, duration_s=1.5, freq=180.0)
    result = emotion(path.read_bytes())
    assert result.face_coverage is None and "visual" not in result.missing  # an audio file
    assert not any(f.startswith("offset not measured") for f in result.flags), result.flags
    before = set(Path(tempfile.gettempdir()).glob("esva-input-*"))
    data = path.read_bytes()
    with pytest.raises(EsvaError) as info:
        emotion(data[:40])  # the magic numbers of an mp4, then nothing
    assert "esva-input-" not in str(info.value) and "\n" not in str(info.value)
    assert set(Path(tempfile.gettempdir()).glob("esva-input-*")) == before


def test_progress_hook(emotion) -> None:
    seen: list[tuple[str, float]] = []
    emotion(_voice(1.0), sample_rate=16_000, progress=lambda stage, f: seen.append((stage, f)))
    assert [s for s, _ in seen] == ["preprocess", "forward", "postprocess", "done"]
    assert [f for _, f in seen] == sorted(f for _, f in seen)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda p: p("/nonexistent/clip.mp4"), "file not found"),
        (lambda p: p(b"this is not a media file at all"), "not a known audio or video format"),
        (lambda p: p(b"RIFF"), "too short"),
        (lambda p: p(_voice(0.5)), "sample_rate"),
        (lambda p: p(_voice(0.5), sample_rate=0), "sample_rate must be a positive"),
        (lambda p: p((_voice(0.5) * 32767).astype(np.int16), sample_rate=16000), "int16"),
        (lambda p: p(np.zeros((1, 2, 3), np.float32), sample_rate=16000), "(channels, samples)"),
        (lambda p: p(np.zeros((16000, 2), np.float32), sample_rate=16000), "x.T"),
        (lambda p: p(np.full(800, np.nan, np.float32), sample_rate=16000), "not finite"),
        (lambda p: p(np.zeros(0, np.float32), sample_rate=16000), "empty"),
        (lambda p: p(frames=np.zeros((4, 8, 8, 3), np.float32), fps=25), "uint8"),
        (lambda p: p(frames=np.zeros((4, 8, 8), np.uint8), fps=25), "RGB"),
        (lambda p: p(frames=np.zeros((4, 8, 8, 3), np.uint8)), "fps"),
        (lambda p: p(12345), "cannot read a int"),
        (lambda p: p(), "no input"),
        (lambda p: p(_voice(0.5), sample_rate=16000, window=3), "unknown option window"),
    ],
)
def test_bad_inputs_are_one_line(emotion, call, fragment) -> None:
    with pytest.raises(EsvaError) as info:
        call(emotion)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message


def test_unknown_task_and_option() -> None:
    with pytest.raises(EsvaError, match=r"unknown task 'poetry' \(choose emotion, align, explain"):
        esva.pipeline("poetry")
    with pytest.raises(EsvaError, match="unknown option colour"):
        esva.pipeline("emotion", colour="red")
    with pytest.raises(EsvaError, match="model folder not found"):
        esva.pipeline("emotion", model="/nonexistent/model")


def test_emotion_result_round_trip(emotion, voice_file) -> None:
    result = emotion(voice_file[0], sample_rate=16_000)
    data = json.loads(json.dumps(result.to_dict()))
    again = EmotionResult.from_dict(data)
    assert again == result and again.to_dict() == result.to_dict()
    with pytest.raises(EsvaError, match="unknown colour"):
        EmotionResult.from_dict({**data, "colour": 1})
    with pytest.raises(EsvaError, match="missing label"):
        EmotionResult.from_dict({k: v for k, v in data.items() if k != "label"})


def test_align_result_round_trip() -> None:
    data = {
        "file": "a.mp4", "audio_file": "a.mp4", "offset_ms": None, "confidence": 0.0,
        "peak_z": 0.0, "local_offsets_ms": [None, 12.5], "window_start_s": [0.0, 0.5],
        "window_s": 1.0, "fps": 50.0, "max_offset_ms": 500.0, "face_coverage": 0.5,
        "flags": ["x"],
    }  # fmt: skip
    assert AlignResult.from_dict(data).to_dict() == data  # no estimate: no curves
    curves = {**data, "taus_ms": [-20.0, 0.0], "xcorr": [0.1, None], "cost": [1.0, 0.5]}
    assert AlignResult.from_dict(curves).to_dict() == curves


# ----------------------------------------------------------------------------- explain


@pytest.fixture(scope="module")
def tiny_explainer(emotion):
    """``esva explain``'s default on the shipped recogniser, with the tiny random LM (fast)."""
    from esva.apps.explain import CueExplainer
    from esva.llm.backbone import TINY_BACKBONE, load_backbone

    lm, tokenizer = load_backbone(TINY_BACKBONE)
    return CueExplainer(emotion.model, lm, tokenizer, TINY_BACKBONE, asr=False)


def test_explain_pipeline_matches_the_cli(tiny_explainer, voice_file, monkeypatch, capsys):
    from esva.apps.explain import CueExplainer

    x, path = voice_file
    pipe = ExplainPipeline(tiny_explainer)
    assert pipe.tasks == ("emotion", "reason", "face", "voice")
    result = pipe(str(path), max_new_tokens=8)
    assert isinstance(result, ExplainResult)
    monkeypatch.setattr(CueExplainer, "from_pretrained", classmethod(lambda c, **k: tiny_explainer))
    cli = _cli_json(capsys, "explain", str(path), "--json", "--no-asr", "--max-new-tokens", "8")
    assert list(result.to_dict()) == list(cli)
    assert result.label == cli["label"] and result.explanation == cli["explanation"]
    assert explain_result(cli).to_dict() == cli  # round trip through JSON
    from_array = pipe(x, sample_rate=16_000, task="voice", max_new_tokens=8)
    assert from_array.file == "<array>" and from_array.task == "voice"
    assert from_array.label == result.label
    with pytest.raises(EsvaError, match="unknown task 'reasoning'"):
        pipe(str(path), task="reasoning")


# ----------------------------------------------------------------------------- align (real)


@pytest.mark.shared
@pytest.mark.slow
def test_video_arrays_answer_as_the_file(shared_data, capsys) -> None:
    """Frames + waveform in memory (decoded here from a real clip) give the file's offset and
    fused emotion: the in-memory path runs the same face tracking and extraction."""
    clip = shared_data / "ravdess_av/Actor_01/01-01-08-01-02-02-01.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    from esva.media.decode import load_audio, load_video

    pipe = esva.pipeline("align")
    assert isinstance(pipe, AlignPipeline)
    result = pipe(clip)
    cli = _cli_json(capsys, "align", str(clip), "--json")
    assert result.to_dict() == cli
    audio, video = load_audio(clip), load_video(clip)
    assert abs(audio.start_s) < 0.05 and abs(video.timestamps_s[0]) < 0.05
    arrays = pipe(frames=video.frames, fps=video.fps, waveform=audio.samples, sample_rate=16_000)
    assert arrays.file == "<array>"
    # the same decoded streams in memory: the same face track, the same offset
    assert abs(arrays.offset_ms - result.offset_ms) < 1.0, (arrays.offset_ms, result.offset_ms)
    emotion = esva.pipeline("emotion")  # the fused default: voice model + face expert
    from_file = emotion(clip)
    from_arrays = emotion(
        frames=video.frames, fps=video.fps, waveform=audio.samples, sample_rate=16_000
    )
    _assert_same_probabilities(from_arrays.probabilities, from_file.probabilities)
    assert from_arrays.per_modality.keys() == from_file.per_modality.keys() == {"voice", "face"}
    with pytest.raises(EsvaError, match="align needs video"):
        pipe(audio.samples, sample_rate=16_000)


@pytest.mark.shared
@pytest.mark.slow
def test_a_visual_model_on_real_frames_in_memory(shared_data, tmp_path) -> None:
    """A model whose extractor tracks faces (fer-cnn at 25 fps) on the real clip's frames."""
    clip = shared_data / "ravdess_av/Actor_01/01-01-08-01-02-02-01.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    from esva.media.decode import load_audio, load_video
    from esva.model import ESVAModel
    from esva.model.config import ESVAConfig

    model_dir = tmp_path / "model"
    ESVAModel(
        ESVAConfig(
            audio_dim=10, visual_dim=135, hidden_dim=16,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(model_dir)  # fmt: skip
    pipe = esva.pipeline("emotion", model=model_dir, assume_default_extraction=True)
    from_file = pipe(clip)
    assert "visual" in from_file.modalities  # faces were found and encoded
    audio, video = load_audio(clip), load_video(clip)
    from_arrays = pipe(
        frames=video.frames, fps=video.fps, waveform=audio.samples, sample_rate=16_000
    )
    _assert_same_probabilities(from_arrays.probabilities, from_file.probabilities)
    assert from_arrays.modalities == from_file.modalities


def test_a_model_with_a_visual_stream_reads_frames_in_memory(tmp_path) -> None:
    """A model that extracts faces itself (prosody + fer-cnn at 25 fps): frames and waveform in
    memory give the probabilities of the same decoded video file."""
    from esva.media.decode import load_audio, load_video
    from esva.model import ESVAModel
    from esva.model.config import ESVAConfig
    from media_factory import write_media

    model_dir = tmp_path / "model"
    ESVAModel(
        ESVAConfig(
            audio_dim=10, visual_dim=135, hidden_dim=16,
            encoders={"audio": "prosody", "visual": "fer-cnn"},
        )
    ).save_pretrained(model_dir)  # fmt: skip
    video = write_media(tmp_path / "talk.mp4", duration_s=1.5, freq=180.0)
    pipe = esva.pipeline("emotion", model=model_dir, assume_default_extraction=True)
    from_file = pipe(video)
    audio, frames = load_audio(video), load_video(video)
    from_arrays = pipe(
        frames=frames.frames, fps=frames.fps, waveform=audio.samples, sample_rate=16_000
    )
    _assert_same_probabilities(from_arrays.probabilities, from_file.probabilities)
    assert from_arrays.flags == from_file.flags and from_arrays.missing == from_file.missing


def test_adapt_reads_a_batch_of_results_like_esva_predict_on_many_files(emotion, tmp_path):
    """``pipe.adapt(results)`` is the batch adaptation of ``esva predict --adapt``: the
    same probabilities as the CSV's adapted rows, the flag, and too few clips change nothing."""
    import csv

    if not emotion.model.model.adaptable:
        pytest.skip("the shipped voice model has no batch-adapted head")
    folder = tmp_path / "ten"
    folder.mkdir()
    waves = []
    for i in range(10):
        x = _voice(1.0 + 0.1 * i) * (0.5 + 0.1 * i)
        sf.write(folder / f"v{i}.wav", x, 16_000, subtype="FLOAT")
        waves.append(x)
    results = [emotion(w, sample_rate=16_000) for w in waves]
    assert emotion.adapt(results[:3]) == results[:3], "fewer than min_clips: unchanged"
    adapted = emotion.adapt(results)
    assert all(any(f.startswith("adapted:") for f in r.flags) for r in adapted)
    out = tmp_path / "p.csv"
    assert main(["predict", str(folder), "--out", str(out), "--quiet", "--adapt"]) == 0
    with open(out, newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    for i, r in enumerate(adapted):
        row = rows[f"v{i}"]
        assert row["adapted"] == "yes" and row["discrete"] == r.label
        for c, p in r.probabilities.items():
            assert float(row[c]) == pytest.approx(p, abs=1e-5)
        assert r.confident == (row["confident"] == "yes")
        voice = r.per_modality["voice"]
        assert voice["label"] == row["voice_label"]
        assert abs(sum(voice["probabilities"].values()) - 1) < 1e-6
    assert any(a.probabilities != b.probabilities for a, b in zip(adapted, results, strict=True))
