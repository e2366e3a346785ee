"""``esva explain`` out of the box: the conclusion is the recogniser's label (forced at decoding),
no unsupported cue ships, the JSON fields, exit codes (tiny random LM: fast, no weights), and the
real offline LM on real clips (skipped when absent)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from esva.apps.explain import CueExplainer, face_from_prediction
from esva.apps.inference import Prediction
from esva.cli.main import main
from esva.llm import conclude
from esva.llm.backbone import TINY_BACKBONE, load_backbone
from esva.llm.cues import ClipCueSet, VoiceCue
from esva.llm.parse import label_strict

CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


@pytest.fixture(scope="module")
def tiny():
    return load_backbone(TINY_BACKBONE)


def _probs(label: str) -> dict[str, float]:
    p = {c: 0.02 for c in CLASSES}
    p[label] = 1.0 - 0.02 * (len(CLASSES) - 1)
    return p


def _cues() -> ClipCueSet:
    return ClipCueSet(
        voice=[VoiceCue("pitch", 250.0, 207.0, "Hz", 3.3, 1.5, 1)],
        voice_reference="the reference voice",
    )


@pytest.mark.parametrize("label", CLASSES)
def test_the_conclusion_names_the_label(tiny, label: str) -> None:
    model, tokenizer = tiny
    exp = conclude.explain_with_model(
        model, tokenizer, _cues(), label, _probs(label), samples=2, max_new_tokens=12
    )
    assert exp.text.endswith(f"Therefore, the emotion is {label}.")
    assert label_strict(exp.text, CLASSES) == label
    assert set(exp.lm_scores) == set(CLASSES)
    assert exp.conclusion_logprob == pytest.approx(exp.lm_scores[label])
    assert np.isfinite(exp.conclusion_logprob) and exp.conclusion_logprob < 0


def test_task_emotion_is_the_answer_alone(tiny) -> None:
    model, tokenizer = tiny
    exp = conclude.explain_with_model(
        model, tokenizer, _cues(), "sad", _probs("sad"), task="emotion"
    )
    assert exp.text == "The emotion is sad." and exp.source == "none"


def test_unsupported_sentences_never_ship(tiny, monkeypatch) -> None:
    model, tokenizer = tiny
    monkeypatch.setattr(
        conclude,
        "sample_reasonings",
        lambda *a, **k: [
            "The voice has a lower pitch. It is fast.",  # pitch was measured higher
            "The voice has a higher pitch. The voice has a higher pitch. She smiles.",
        ],
    )
    exp = conclude.explain_with_model(model, tokenizer, _cues(), "happy", _probs("happy"))
    assert exp.source == "lm"
    assert "lower pitch" not in exp.text and "smiles" not in exp.text  # no face was measured
    assert exp.text == "The voice has a higher pitch. Therefore, the emotion is happy."
    dropped = {d["sentence"] for d in exp.dropped}
    assert {"The voice has a higher pitch.", "She smiles."} <= dropped


def test_no_surviving_sentence_falls_back_to_the_measured_cues(tiny, monkeypatch) -> None:
    model, tokenizer = tiny
    monkeypatch.setattr(conclude, "sample_reasonings", lambda *a, **k: ["She is shouting."])
    exp = conclude.explain_with_model(model, tokenizer, _cues(), "angry", _probs("angry"))
    assert exp.source == "cues"
    assert exp.text == (
        "Compared with the reference voice, the voice has a higher pitch. "
        "Therefore, the emotion is angry."
    )


def test_other_class_names_are_banned_while_reasoning(tiny) -> None:
    _, tokenizer = tiny
    banned = conclude.banned_words(tokenizer, ["sad"])
    forms = {tokenizer.decode(ids) for ids in banned}
    assert forms == {"sad", "Sad", " sad", " Sad"}


# ----------------------------------------------------------------------------- the app


class FakeRecognizer:
    """Stands in for the default recogniser: a plain Prediction, or one with the fused
    default's per_modality face track (``esva.apps.fused.fuse``'s entry), and the audio-video
    offset it measured (``offset``: (ms, confidence))."""

    def __init__(self, label: str = "happy", face: bool = False, offset=(None, None)):
        self.label, self.face, self.offset = label, face, offset

    def predict_with_analysis(self, path, audio=None):
        """(prediction, analysis): the analysis carries the decoded audio, no encoder stream."""
        from esva.media.decode import load_audio

        clip = load_audio(Path(audio or path), missing_ok=True)
        return self.predict(path, audio), SimpleNamespace(audio=clip, streams={})

    def predict(self, path, audio=None):
        p = Prediction(
            file=str(path),
            label=self.label,
            probabilities=_probs(self.label),
            offset_ms=self.offset[0],
            offset_confidence=self.offset[1],
            modalities=["audio"],
            missing=[],
            flags=[],
            model="fake",
        )
        if not self.face:
            return p
        face = {"probabilities": _probs("happy"), "raw": _probs("happy"), "peak_time_s": 0.8}
        face |= {"coverage": 1.0, "presence": 1.0, "weight": 0.3}
        timeline = [
            {"start_s": t0, "end_s": t0 + 2, "per_modality": {"face": {"probabilities": _probs(e)}}}
            for t0, e in ((0.0, "neutral"), (0.5, "happy"))
        ]
        return replace(
            p, per_modality={"face": face}, peak_face_time_s=0.8, timeline=timeline,
            modalities=["audio", "face"],
        )  # fmt: skip


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    sr = 16000
    t = np.arange(int(2.0 * sr)) / sr
    f0 = 180 + 40 * np.sin(2 * np.pi * 1.5 * t)  # a voiced, gliding tone in bursts
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * 4 * t) > -0.3)
    path = tmp_path_factory.mktemp("media") / "tone.wav"
    sf.write(path, x.astype(np.float32), sr)
    return path


def _explainer(tiny, **kw) -> CueExplainer:
    model, tokenizer = tiny
    return CueExplainer(FakeRecognizer(**kw), model, tokenizer, TINY_BACKBONE, asr=False)


FIELDS = {"label", "probabilities", "explanation", "open_vocabulary", "cues", "modalities", "task"}


def test_json_fields_voice(tiny, wav) -> None:
    r = _explainer(tiny).explain(wav)
    assert set(r) >= FIELDS
    assert r["label"] == "happy" and r["task"] == "reason"
    assert r["explanation"].endswith("Therefore, the emotion is happy.")
    assert "happy" in r["open_vocabulary"]
    assert {c["name"] for c in r["cues"]["voice"]} >= {"pitch", "loudness", "pace"}
    assert "RAVDESS" in r["cues"]["voice_reference"]
    assert r["modalities"] == {"recogniser": ["audio"], "cues": ["voice"], "adapter": []}
    assert r["second_opinion"] is None  # a base LM: no adapter, no second opinion
    assert r["cues"]["face"] is None
    json.dumps(r)  # plain JSON


def test_face_track_from_a_fused_prediction(tiny, wav) -> None:
    explainer = _explainer(tiny, face=True)
    face = face_from_prediction(explainer.recognizer.predict(wav))
    assert face.peak_time_s == 0.8 and face.trajectory()[-1] == "happy"
    assert face.shown() == {"neutral", "happy"}
    r = explainer.explain(wav, task="face")
    assert r["modalities"]["cues"] == ["face"] and r["cues"]["voice"] == []
    assert r["cues"]["face"]["peak_time_s"] == 0.8


def test_plain_prediction_has_no_face(tiny, wav) -> None:
    assert face_from_prediction(FakeRecognizer().predict(wav)) is None


def test_cli_default_explain(tiny, wav, monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        CueExplainer, "from_pretrained", classmethod(lambda c, **k: _explainer(tiny))
    )
    assert main(["explain", str(wav), "--json", "--no-asr"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= FIELDS and r["explanation"].endswith("is happy.")
    assert main(["explain", str(wav), "--task", "emotion"]) == 0
    assert "The emotion is happy." in capsys.readouterr().out
    rc = main(["explain", str(wav), "--task", "face"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no face was measured" in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- real weights


@pytest.mark.slow
@pytest.mark.shared
def test_real_lm_on_a_real_clip(shared_data) -> None:
    from esva.llm.backbone import DEFAULT_BACKBONE, converted_dir

    if not converted_dir(DEFAULT_BACKBONE).is_dir():
        pytest.skip("SmolLM2 not converted in the esva cache (esva weights pull)")
    clip = shared_data / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    r = CueExplainer.from_pretrained(asr=False).explain(clip)  # the shipped adapter
    assert r["explanation"].endswith(f"Therefore, the emotion is {r['label']}.")
    second = r["second_opinion"]
    assert second is not None and r["modalities"]["adapter"] == ["voice"]
    assert sum(second["lm_probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert label_strict(r["explanation"], list(r["probabilities"])) == r["label"]
    cues = ClipCueSet(voice=[VoiceCue(**c) for c in r["cues"]["voice"]])
    from esva.llm.cues import check_sentence

    assert all(check_sentence(s["sentence"], cues) == [] for s in r["cues"]["sentences"])


def test_serve_explains_out_of_the_box(tiny, wav, monkeypatch) -> None:
    """``esva serve`` with no adapter: /api/explain answers with the default explainer on the
    server's own recogniser, takes its tasks, and refuses others with a 400."""
    from esva.apps.serve import DefaultExplainer, create_app
    from serve_client import ThreadServer, post_files, request

    class Service:
        name, classes = "fake", ("neutral", "happy")
        recognizer = FakeRecognizer()

        def predict(self, path, audio=None) -> dict:
            return self.recognizer.predict(path).to_dict()

    loaded = []

    def load(self):
        loaded.append(self.recognizer)
        return CueExplainer(self.recognizer, *tiny, TINY_BACKBONE, asr=False)

    monkeypatch.setattr(DefaultExplainer, "_load", load)
    monkeypatch.setattr("esva.apps.serve.lm_unavailable", lambda: None)  # the tiny LM stands in
    app = create_app(service=Service(), default_explain=True, max_upload_mb=1)
    data = Path(wav).read_bytes()
    with ThreadServer(app) as srv:
        assert request(srv.url + "/api/info")[1]["explain"] is True
        url = srv.url + "/api/explain"
        status, body = post_files(url, {"file": ("a.wav", data), "task": "voice"})
        assert status == 200, body
        assert body["task"] == "voice" and body["label"] == "happy"
        assert body["explanation"].endswith("Therefore, the emotion is happy.")
        status, body = post_files(url, {"file": ("a.wav", data), "task": "recognition"})
        assert status == 400 and "unknown task" in body["error"], body
    assert loaded and loaded[0] is Service.recognizer


def test_the_shared_prompt_cache_changes_no_number(tiny) -> None:
    """The conclusion read on top of the prompt's KV cache scores exactly what reading prompt +
    reasoning + clause from scratch scores."""
    model, tokenizer = tiny
    messages = conclude.prompt_messages(_cues(), "sad", _probs("sad"), "reason", ("voice",))
    prompt_ids = conclude._prompt_ids(tokenizer, messages)
    args = (model, tokenizer, prompt_ids, "The voice has a higher pitch.", "sad", CLASSES)
    cached = conclude.force_conclusion(*args, prompt_cache=conclude.prefill(model, prompt_ids))
    fresh = conclude.force_conclusion(*args)
    assert cached[0] == fresh[0]
    assert cached[1] == pytest.approx(fresh[1], abs=1e-4)
    assert cached[2] == pytest.approx(fresh[2], abs=1e-4)


def test_long_clips_are_explained_per_segment() -> None:
    from esva.apps.explain import segment_summary

    windows = [
        {"start_s": 0.0, "end_s": 10.0, "label": "neutral"},
        {"start_s": 5.0, "end_s": 15.0, "label": "neutral"},
        {"start_s": 10.0, "end_s": 20.0, "label": "happy"},
        {"start_s": 15.0, "end_s": 62.0, "label": "neutral"},
    ]
    segments, text = segment_summary(windows, 62.0)
    assert [s["label"] for s in segments] == ["neutral", "happy", "neutral"]
    assert segments[0]["windows"] == 2 and segments[0]["end_s"] == 15.0
    assert text.startswith("A 62 s clip read in 4 windows: mostly neutral")
    assert "10-20 s happy" in text and len(text) < 300
    many = [{"start_s": i, "end_s": i + 1.0, "label": "ab"[i % 2]} for i in range(40)]
    _, text = segment_summary(many, 40.0)
    assert "and 28 more" in text and len(text) < 400


def test_llm_is_named_not_located() -> None:
    from esva.apps.explain import llm_name
    from esva.assets import explain_adapter_dir

    shipped = str(explain_adapter_dir(verify=False))
    assert llm_name(shipped, adapter=object()) == (
        "esva explanation adapter (SmolLM2-135M-Instruct + LoRA)"
    )
    assert llm_name("/opt/models/Llama-2-7b-chat-hf") == "Llama-2-7b-chat-hf"
    assert llm_name("smollm2-135m-instruct") == "smollm2-135m-instruct"


def test_explain_prints_no_transformers_cache_warning(tiny, wav, capfd) -> None:
    """transformers' `past_key_values` rename notice never reaches esva explain's output."""
    import logging

    from esva.llm.conclude import CACHE_RENAME_WARNING

    capfd.readouterr()
    _explainer(tiny).explain(wav)
    out, err = capfd.readouterr()
    assert CACHE_RENAME_WARNING not in out + err
    logger = logging.getLogger("transformers.utils.generic")
    message = "`past_key_values`/`cache_params` are deprecated. Use `cache` instead."
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, None, None)
    assert not logger.filter(record)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("take", ["01-01-01-01-01-01-01", "01-01-08-01-01-02-01"])
def test_explain_agrees_with_predict_on_real_talking_faces(shared_data, take) -> None:
    """RAVDESS Actor_01 talking-face takes (video: outside what the LM's weight was validated
    on): esva explain's label and probabilities are esva predict's; the LM only reports."""
    from esva.llm.backbone import DEFAULT_BACKBONE, converted_dir
    from esva.weights.cache import cached_path

    if not (converted_dir(DEFAULT_BACKBONE).is_dir() or cached_path(DEFAULT_BACKBONE).exists()):
        pytest.skip("SmolLM2 not in the esva cache (esva weights pull smollm2-135m-instruct)")
    clip = shared_data / "ravdess_av" / "Actor_01" / f"{take}.mp4"
    explainer = _real_explainer()
    predicted = explainer.recognizer.predict(clip)
    r = explainer.explain(clip)
    assert r["label"] == predicted.label
    assert r["probabilities"] == pytest.approx(predicted.probabilities)
    assert r["confident"] == predicted.confident
    # the offset the recogniser measured on the talking face, kept in the answer
    assert predicted.offset_ms is not None
    assert r["offset_ms"] == pytest.approx(predicted.offset_ms)
    assert r["offset_confidence"] == pytest.approx(predicted.offset_confidence)
    second = r["second_opinion"]
    assert second["applied"] is False and any("video" in w for w in second["not_applied_because"])
    assert r["explanation"].endswith(f"Therefore, the emotion is {r['label']}.")


_REAL: list = []


def _real_explainer() -> CueExplainer:
    """One shipped explainer for the real-take tests (the models load once)."""
    if not _REAL:
        _REAL.append(CueExplainer.from_pretrained(asr=False))
    return _REAL[0]


def test_a_long_clip_is_explained_per_segment(tiny, wav) -> None:
    """Past LONG_CLIP_S the explanation starts with the per-window summary and lists segments."""
    from esva.apps.explain import LONG_CLIP_S

    class LongRecognizer(FakeRecognizer):
        def predict(self, path, audio=None):
            windows = [
                {"start_s": 10.0 * i, "end_s": 10.0 * i + 10.0, "label": label}
                for i, label in enumerate(["happy", "happy", "sad", "happy"])
            ]
            return replace(super().predict(path, audio), duration_s=40.0, timeline=windows)

    model, tokenizer = tiny
    r = CueExplainer(LongRecognizer(), model, tokenizer, TINY_BACKBONE, asr=False).explain(wav)
    assert LONG_CLIP_S < 40.0
    assert r["explanation"].startswith("A 40 s clip read in 4 windows: mostly happy (30 s).")
    assert "\nOverall: " in r["explanation"]
    assert [s["label"] for s in r["segments"]] == ["happy", "sad", "happy"]
    short = _explainer(tiny).explain(wav)
    assert "segments" not in short and not short["explanation"].startswith("A ")


def test_explain_keeps_the_recognisers_offset(tiny, wav, monkeypatch, capsys) -> None:
    """The audio-video offset the recogniser measured is in the answer: the explainer's JSON,
    ``esva explain --json`` (the typed ExplainResult, round trip included) and /api/explain."""
    from esva.apps.results import ExplainResult, explain_result
    from esva.apps.serve import DefaultExplainer, create_app
    from serve_client import ThreadServer, post_files

    model, tokenizer = tiny
    recognizer = FakeRecognizer(offset=(42.5, 0.81))
    explainer = CueExplainer(recognizer, model, tokenizer, TINY_BACKBONE, asr=False)
    r = explainer.explain(wav)
    assert (r["offset_ms"], r["offset_confidence"]) == (42.5, 0.81)
    typed = explain_result(r)
    assert isinstance(typed, ExplainResult) and typed.offset_ms == 42.5
    assert "offset_ms" not in typed.extra  # a named field of the typed result
    assert ExplainResult.from_dict(typed.to_dict()) == typed
    # without a face the offset is undefined, and said so (None), never left out
    plain = _explainer(tiny).explain(wav)
    assert plain["offset_ms"] is None and plain["offset_confidence"] is None

    monkeypatch.setattr(CueExplainer, "from_pretrained", classmethod(lambda c, **k: explainer))
    assert main(["explain", str(wav), "--json", "--no-asr"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert (cli["offset_ms"], cli["offset_confidence"]) == (42.5, 0.81)
    assert set(cli) >= FIELDS | {"second_opinion", "llm", "model", "flags"}
    assert main(["explain", str(wav), "--no-asr"]) == 0
    assert "audio-video offset: +42.5 ms" in capsys.readouterr().out

    class Service:
        name, classes = "fake", ("neutral", "happy")

        def __init__(self) -> None:
            self.recognizer = recognizer

        def predict(self, path, audio=None) -> dict:
            return self.recognizer.predict(path).to_dict()

    monkeypatch.setattr(DefaultExplainer, "_load", lambda self: explainer)
    monkeypatch.setattr("esva.apps.serve.lm_unavailable", lambda: None)
    app = create_app(service=Service(), default_explain=True, max_upload_mb=1)
    with ThreadServer(app) as srv:
        status, body = post_files(srv.url + "/api/explain", {"file": ("a.wav", wav.read_bytes())})
    assert status == 200, body
    assert (body["offset_ms"], body["offset_confidence"]) == (42.5, 0.81)
