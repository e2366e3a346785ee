"""Reliability-weighted late fusion (esva.fusion) and the fused default of ``esva predict``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import esva.assets
from esva.apps.fused import ExpertOutput, fuse
from esva.assets import DEFAULT_FUSION_SHA256, default_model_dir, verify_files
from esva.errors import EsvaError
from esva.fusion.label_spaces import FERPLUS_SER7, target_table, to_target
from esva.fusion.reliability import (
    entropy_confidence,
    log_linear_pool,
    reliability_weights,
    speech_presence,
    vad_frames,
)
from esva.fusion.spec import FusionSpec, load_fusion
from esva.labelsets import RAVDESS_CLASSES, SER7_CLASSES
from media_factory import write_voice

FER = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
BASE = {"voice": 0.6, "face": 0.4}


def _p(*v) -> np.ndarray:
    p = np.asarray(v, np.float64)
    return p / p.sum()


# ----------------------------------------------------------------------------- the pool


def test_log_linear_pool_is_the_weighted_geometric_mean():
    a, b = _p(0.7, 0.2, 0.1), _p(0.1, 0.3, 0.6)
    got = log_linear_pool({"a": a, "b": b}, {"a": 0.75, "b": 0.25})
    want = a**0.75 * b**0.25
    assert np.allclose(got, want / want.sum())
    # one expert at weight 1 is that expert; all weights 0 is uniform
    assert np.allclose(log_linear_pool({"a": a, "b": b}, {"a": 1.0, "b": 0.0}), a)
    assert np.allclose(log_linear_pool({"a": a}, {"a": 0.0}), 1 / 3)
    with pytest.raises(EsvaError, match="class space"):
        log_linear_pool({"a": a, "b": _p(1, 1)}, {"a": 1, "b": 1})
    with pytest.raises(EsvaError, match=">= 0"):
        log_linear_pool({"a": a}, {"a": -1.0})


def test_a_zero_presence_modality_has_exactly_no_effect():
    voice, face = _p(0.8, 0.1, 0.1), _p(0.1, 0.1, 0.8)
    conf = {"voice": entropy_confidence(voice), "face": entropy_confidence(face)}
    for gamma in (0.0, 1.0):
        alone = reliability_weights({"voice": 0.7}, conf, BASE, gamma)
        both = reliability_weights({"voice": 0.7, "face": 0.0}, conf, BASE, gamma)
        assert both["face"] == 0.0 and both["voice"] == pytest.approx(alone["voice"])
        fused = log_linear_pool({"voice": voice, "face": face}, both)
        assert np.allclose(fused, log_linear_pool({"voice": voice}, alone))


def test_one_fully_present_expert_returns_its_own_distribution():
    p = _p(0.5, 0.3, 0.2)
    for gamma in (0.0, 2.0):
        w = reliability_weights({"face": 1.0}, {"face": entropy_confidence(p)}, BASE, gamma)
        assert w == {"face": pytest.approx(1.0)}
        assert np.allclose(log_linear_pool({"face": p}, w), p)


def test_weights_follow_presence_and_confidence():
    full = reliability_weights({"voice": 1, "face": 1}, {}, BASE, 0.0)
    assert full == {"voice": pytest.approx(0.6), "face": pytest.approx(0.4)}  # base weights
    # the face's share grows with its coverage, the voice's with its speech presence
    faces = [reliability_weights({"voice": 1, "face": q}, {}, BASE)["face"] for q in (0.2, 0.6)]
    assert faces[0] < faces[1]
    voices = [reliability_weights({"voice": q, "face": 1}, {}, BASE)["voice"] for q in (0.2, 0.6)]
    assert voices[0] < voices[1]
    # gamma > 0: the more confident expert gains weight; gamma = 0: confidence is ignored
    conf = {"voice": 0.9, "face": 0.3}
    w0 = reliability_weights({"voice": 1, "face": 1}, conf, BASE, 0.0)
    w1 = reliability_weights({"voice": 1, "face": 1}, conf, BASE, 1.0)
    assert w1["voice"] / w1["face"] > w0["voice"] / w0["face"] == pytest.approx(1.5)
    # little evidence in total flattens the answer (weights sum below 1)
    low = reliability_weights({"voice": 0.3, "face": 0.0}, {}, BASE)
    assert sum(low.values()) == pytest.approx(0.3)
    assert reliability_weights({"voice": 0.0, "face": 0.0}, {}, BASE) == {"voice": 0, "face": 0}
    with pytest.raises(EsvaError, match="base weight"):
        reliability_weights({"text": 1.0}, {}, BASE)


def test_entropy_confidence_bounds():
    assert entropy_confidence(np.full(7, 1 / 7)) == pytest.approx(0.0, abs=1e-9)
    assert entropy_confidence(np.eye(7)[2]) == pytest.approx(1.0)
    assert 0 < entropy_confidence(_p(0.6, 0.3, 0.1)) < 1


def test_energy_vad_finds_speech_share():
    sr = 16_000
    rng = np.random.default_rng(0)
    silence = np.zeros(sr * 2, np.float32)
    assert vad_frames(silence, sr)[1].sum() == 0
    hum = (0.01 * rng.standard_normal(sr * 2)).astype(np.float32)  # steady noise only
    assert vad_frames(hum, sr)[1].mean() < 0.15
    t = np.arange(sr) / sr
    burst = 0.3 * np.sin(2 * np.pi * 200 * t)
    x = np.concatenate([hum[:sr], hum[sr:] + burst]).astype(np.float32)  # 1 s voiced of 2
    share = vad_frames(x, sr)[1].mean()
    assert 0.4 < share < 0.6
    assert speech_presence(share, 0.5) == pytest.approx(min(1.0, share / 0.5))
    assert speech_presence(0.1, 0.5) == pytest.approx(0.2)


def test_fuse_any_subset_and_per_window():
    spec = _spec()
    voice = ExpertOutput(list(RAVDESS_CLASSES), _p(1, 1, 8, 1, 1, 1, 1, 1), 1.0)
    face = ExpertOutput(list(FER), _p(1, 6, 1, 1, 1, 1, 1, 3), 1.0, info={"peak_time_s": 1.2})
    both = fuse(spec, {"voice": voice, "face": face}, [])
    assert set(both.per_modality) == {"voice", "face"} and both.used == ["voice", "face"]
    assert both.peak_face_time_s == 1.2
    assert list(both.per_modality["face"]["raw"]) == list(FER)  # the 8-class output is kept
    only_face = fuse(spec, {"face": face}, [])
    assert only_face.used == ["face"] and only_face.per_modality["face"]["weight"] == 1.0
    assert np.allclose(only_face.probabilities, to_target(face.probs, FER))
    silent_voice = ExpertOutput(voice.classes, voice.probs, 0.0)
    assert np.allclose(
        fuse(spec, {"voice": silent_voice, "face": face}, []).probabilities,
        only_face.probabilities,
    )
    nothing = fuse(spec, {"voice": silent_voice}, [])
    assert not nothing.confident and np.allclose(nothing.probabilities, 1 / 7)
    with pytest.raises(EsvaError, match="no usable"):
        fuse(spec, {}, [])
    voice.windows = [(voice.probs, 1.0), (voice.probs, 0.0)]
    face.windows = [(face.probs, 0.0), (face.probs, 1.0)]
    timeline = fuse(spec, {"voice": voice, "face": face}, [(0, 2), (0.5, 2.5)]).timeline
    assert [w["per_modality"]["face"]["weight"] for w in timeline] == [0.0, 1.0]
    assert timeline[0]["label"] == "happy" and timeline[1]["label"] == "happy"


# ----------------------------------------------------------------------------- label spaces


def test_voice_classes_map_to_ser7_explicitly():
    table = target_table(RAVDESS_CLASSES)
    assert table["calm"] == "neutral" and table["surprised"] == "surprised"
    p = to_target(_p(1, 2, 3, 4, 5, 6, 7, 8), RAVDESS_CLASSES)
    assert p.shape == (7,) and p[0] == pytest.approx(3 / 36)  # neutral + calm
    # a voice model already in ser7 (the cross-corpus one): identity
    assert target_table(SER7_CLASSES) == {c: c for c in SER7_CLASSES}
    q = _p(1, 2, 3, 4, 5, 6, 7)
    assert np.allclose(to_target(q, SER7_CLASSES), q)
    with pytest.raises(EsvaError, match="no table"):
        target_table(["elated", "bored"])


def test_face_expert_classes_map_to_ser7_and_contempt_is_dropped():
    from esva.encoders.face_expert import CLASSES

    assert tuple(FERPLUS_SER7) == CLASSES  # every FER+ class has an explicit entry
    assert FERPLUS_SER7["contempt"] is None
    raw = _p(1, 1, 1, 1, 1, 1, 1, 3)  # contempt strongest
    p = to_target(raw, CLASSES)
    assert np.allclose(p, 1 / 7)  # contempt dropped, the seven renormalised
    mapped = dict(zip(SER7_CLASSES, to_target(_p(0, 2, 1, 0, 0, 0, 0, 0), CLASSES), strict=True))
    assert mapped["happy"] == pytest.approx(2 / 3) and mapped["surprised"] == pytest.approx(1 / 3)


def test_a_class_an_expert_lacks_gets_no_opinion():
    five = ("neutral", "happy", "sad", "angry", "fearful")  # no disgust, no surprised
    p = to_target(_p(4, 1, 1, 1, 1), five)
    covered = p[:5]
    geo = np.exp(np.log(covered).mean())
    assert p[5] == pytest.approx(geo) and p[6] == pytest.approx(geo)
    assert p.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- settings


def _spec(**over) -> FusionSpec:
    d = {
        "format": "esva-fusion/1",
        "classes": list(SER7_CLASSES),
        "experts": {
            "voice": {"temperature": 1.0, "base_weight": 0.6, "source": "model"},
            "face": {"temperature": 1.0, "base_weight": 0.4, "encoder": "face-expert"},
        },
        "confidence_power": 0.0,
        "speech_full": 0.5,
        **over,
    }
    return FusionSpec.from_dict(d)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"format": "x"}, "esva-fusion/1"),
        ({"classes": ["a"]}, "classes"),
        ({"experts": {"text": {"base_weight": 1}}}, "experts"),
        ({"experts": {"face": {"base_weight": 1}}}, "encoder"),
        ({"experts": {"voice": {"base_weight": float("nan")}}}, "base_weight"),
        ({"experts": {"voice": {"base_weight": 1, "temperature": 0}}}, "temperature"),
        ({"speech_full": 0}, "speech_full"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_threshold": "high"}, "confidence_threshold"),
    ],
)
def test_bad_fusion_settings_are_one_line_errors(over, words):
    with pytest.raises(EsvaError, match=words):
        _spec(**over)


def test_calibrated_confidence_rule_and_round_trip():
    from esva.apps.fused import calibrated_confidence

    spec = _spec(confidence_threshold=0.5)
    assert FusionSpec.from_dict(spec.to_dict()).confidence_threshold == 0.5
    assert calibrated_confidence(np.array([0.6, 0.3, 0.1]), spec) == (True, None)
    ok, flag = calibrated_confidence(np.array([0.45, 0.35, 0.2]), spec)
    assert not ok and flag.startswith("uncertain: top probability 0.45") and "0.50" in flag
    no_rule = _spec()
    assert no_rule.confidence_threshold is None and "confidence_threshold" not in no_rule.to_dict()
    assert calibrated_confidence(np.array([0.2, 0.2, 0.6]), no_rule) == (True, None)


def test_shipped_fusion_json_is_hash_checked(tmp_path, monkeypatch):
    directory = default_model_dir()  # verifies fusion.json too
    spec = load_fusion(directory)
    assert spec is not None and spec.classes == SER7_CLASSES
    assert spec.face_encoder == "face-ensemble" and set(spec.experts) == {"voice", "face"}
    assert spec.confidence_threshold is not None and 0 < spec.confidence_threshold < 1
    assert set(DEFAULT_FUSION_SHA256) == {"fusion.json"}
    copy = tmp_path / "m"
    shutil.copytree(directory, copy)
    verify_files(copy, DEFAULT_FUSION_SHA256)
    text = (copy / "fusion.json").read_text().replace('"confidence_power"', '"confidence_power" ')
    (copy / "fusion.json").write_text(text)
    with pytest.raises(EsvaError, match=r"fusion\.json.*sha256"):
        verify_files(copy, DEFAULT_FUSION_SHA256)
    monkeypatch.setitem(esva.assets.DEFAULT_FUSION_SHA256, "fusion.json", "0" * 64)
    with pytest.raises(EsvaError, match=r"fusion\.json"):
        default_model_dir()


# ----------------------------------------------------------------------------- end to end


def _predict_json(capsys, *args: str) -> dict:
    from esva.cli.main import main

    rc = main(["predict", *args, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_audio_file_is_answered_by_the_voice_alone(tmp_path, capsys):
    pred = _predict_json(capsys, str(write_voice(tmp_path / "v.wav")))
    assert list(pred["probabilities"]) == list(SER7_CLASSES)  # no calm in the output
    assert set(pred["per_modality"]) == {"voice"}
    voice = pred["per_modality"]["voice"]
    assert voice["weight"] > 0 and 0 < voice["presence"] <= 1
    assert "raw" not in voice  # the voice model answers in ser7 itself: nothing to map
    assert pred["peak_face_time_s"] is None and pred["modalities"] == ["audio"]
    assert not any(f.startswith(("face-only", "voice-only")) for f in pred["flags"])
    assert all("per_modality" in w for w in pred["timeline"])


def test_video_without_a_face_is_answered_by_the_voice_and_flagged(tmp_path, capsys):
    from media_factory import write_media

    video = write_media(tmp_path / "noface.mp4", duration_s=2.5, audio=False, size=(160, 120))
    pred = _predict_json(capsys, str(video), "--audio", str(write_voice(tmp_path / "v.wav")))
    assert set(pred["per_modality"]) == {"voice"} and pred["modalities"] == ["audio"]
    assert any(f.startswith("voice-only") for f in pred["flags"])
    assert pred["missing"] == ["visual"]


def test_a_folder_without_fusion_json_is_the_plain_model(tmp_path, capsys):
    """A user's own model folder keeps answering in its own classes, no per_modality."""
    folder = tmp_path / "mine"
    shutil.copytree(default_model_dir(), folder)
    (folder / "fusion.json").unlink()
    pred = _predict_json(capsys, str(write_voice(tmp_path / "v.wav")), "--model", str(folder))
    assert list(pred["probabilities"]) == list(SER7_CLASSES)  # the pooled voice model's own
    assert pred["per_modality"] is None and pred["peak_face_time_s"] is None
    assert pred["confident"]  # no fusion.json: no calibrated threshold, only the length rule
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(3 * 16_000, np.float32), 16_000)
    quiet = _predict_json(capsys, str(silence), "--model", str(folder))
    assert "silent" in quiet["flags"] and not quiet["confident"]  # not a peaked guess


def test_plot_has_the_fused_voice_and_face_tracks():
    from esva.apps.inference import Prediction
    from esva.apps.predict import timeline_figure

    classes = list(SER7_CLASSES)
    uni = dict.fromkeys(classes, 1 / 7)
    windows = [
        {"start_s": t, "end_s": t + 2, "label": "neutral", "probabilities": uni,
         "per_modality": {"voice": {"probabilities": uni, "weight": 0.5},
                          "face": {"probabilities": uni, "weight": 0.5}}}
        for t in (0.0, 0.5, 1.0)
    ]  # fmt: skip
    pm = {
        "voice": {"label": "neutral", "probabilities": uni, "weight": 0.5},
        "face": {"label": "neutral", "probabilities": uni, "weight": 0.5, "peak_time_s": 1.0},
    }
    pred = Prediction("x.mp4", "neutral", uni, None, None, ["audio", "visual"], [], [],
                      windows, duration_s=3.0, per_modality=pm)  # fmt: skip
    fig = timeline_figure(pred, classes)
    assert [ax.get_gid() for ax in fig.axes] == ["track-fused", "track-voice", "track-face"]
    plain = Prediction("x.wav", "neutral", uni, None, None, ["audio"], [], [], windows[:1])
    assert [ax.get_gid() for ax in timeline_figure(plain, classes).axes] == ["track-fused"]


# ----------------------------------------------------------------------------- real clips


@pytest.mark.shared
def test_silent_face_video_gets_a_flagged_face_only_answer(shared_data, tmp_path, capsys):
    from esva.cli.main import main
    from media_factory import cut_media

    src = shared_data / "mead_faces" / "W009_front_happy_level3_001.mp4"
    silent = cut_media(src, tmp_path / "silent.mp4", 2.0, audio_s=0)
    pred = _predict_json(capsys, str(silent))
    assert any(f.startswith("face-only") for f in pred["flags"])
    assert pred["modalities"] == ["visual"] and pred["missing"] == ["audio"]
    face = pred["per_modality"]["face"]
    assert set(pred["per_modality"]) == {"face"} and face["weight"] > 0.5
    assert list(face["raw"]) == list(FER) and abs(sum(face["raw"].values()) - 1) < 1e-6
    assert face["coverage"] > 0.9 and 0.0 <= face["peak_time_s"] <= 2.0
    assert pred["peak_face_time_s"] == face["peak_time_s"]
    assert pred["label"] in SER7_CLASSES and pred["offset_ms"] is None
    assert main(["predict", str(silent)]) == 0  # the text output, exit 0
    out = capsys.readouterr().out
    assert "face-only" in out and "fused" in out and "face" in out


@pytest.mark.shared
def test_talking_face_is_fused_and_printed_per_modality(shared_data, tmp_path, capsys):
    from esva.cli.main import main
    from media_factory import cut_media

    src = shared_data / "ravdess_av" / "Actor_01" / "01-01-08-01-01-02-01.mp4"
    clip = cut_media(src, tmp_path / "take.mp4", 2.5)
    pred = _predict_json(capsys, str(clip))
    pm = pred["per_modality"]
    assert set(pm) == {"voice", "face"} and pm["voice"]["weight"] > 0 and pm["face"]["weight"] > 0
    assert pred["modalities"] == ["audio", "visual"]
    for m in pm.values():
        assert abs(sum(m["probabilities"].values()) - 1) < 1e-6
    assert pred["offset_ms"] is not None  # the same MTCNN track still measures the offset
    assert main(["predict", str(clip), "--plot", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in ("voice", "face", "fused"):
        assert any(line.strip("│ ").startswith(name) for line in lines), name
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_face_expert_reads_the_detected_frames_of_the_sync_track():
    """Every 3rd frame (the detector's) is read; coverage still counts every tracked frame."""
    from esva.apps.fused import expert_frames, face_expert_output
    from esva.media.types import FaceTrack

    n = 30
    mask = np.ones(n, bool)
    mask[24:] = False  # the face is lost for the last 6 frames
    detected = (np.arange(n) % 3 == 0) & mask
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (n, 64, 64, 1), dtype=np.uint8)
    track = FaceTrack(crops, np.arange(n) / 30.0, mask, detected=detected)
    assert (expert_frames(track) == detected).all()
    assert (expert_frames(FaceTrack(crops, track.timestamps_s, mask)) == mask).all()

    class Counting:
        labels = FER
        seen = 0

        def encode(self, sub):
            Counting.seen = len(sub.mask)
            from esva.data.streams import EncoderRecord, StreamFeatures

            logits = np.zeros((len(sub.mask), 8), np.float32)
            return StreamFeatures(logits, 30.0, 0.0, sub.mask, EncoderRecord("x", "1", "", ""))

        @staticmethod
        def probabilities(features):
            e = np.exp(features)
            return e / e.sum(axis=1, keepdims=True)

    out = face_expert_output(Counting(), track, 0.8, 0.0, [(0.0, 0.5), (0.5, 1.0)])
    assert Counting.seen == int(detected.sum()) == 8
    assert out.presence == pytest.approx(0.8) and out.info["frames_read"] == 8
    assert out.windows[0][1] == pytest.approx(1.0) and out.windows[1][1] == pytest.approx(0.6)
