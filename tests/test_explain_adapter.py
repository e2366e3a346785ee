"""The explanation adapter (esva.llm.adapter): the second-opinion scoring, the fusion with the
recogniser, the training sentences (always true), the folder round trip (tiny random LM), and
the shipped adapter's files and hashes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from esva.llm import adapter as ad
from esva.llm.backbone import TINY_BACKBONE
from esva.llm.cues import ClipCueSet, FaceTrackCue, VoiceCue, check_sentence, claims
from esva.llm.lora import LoraSettings
from esva.llm.model import EmotionLLM, EmotionLLMConfig

CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


@pytest.fixture(scope="module")
def tiny_model() -> EmotionLLM:
    torch.manual_seed(0)
    config = EmotionLLMConfig(
        streams=dict(ad.STREAM_DIMS), backbone=TINY_BACKBONE, lora=LoraSettings(r=2, alpha=4)
    )
    model = EmotionLLM.build(config).eval()
    with torch.no_grad():  # LoRA B starts at zero: make the adapters change the LM
        for name, p in model.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    return model


def _cues(face: bool = True) -> ClipCueSet:
    voice = [
        VoiceCue("pitch", 250.0, 207.0, "Hz", 3.3, 1.5, 1),
        VoiceCue("loudness", -30.0, -28.0, "dBFS", -2.0, 3.0, 0),
        VoiceCue("pace", 3.0, 4.3, "syllables/s", 0.7, 1.15, -1),
        VoiceCue("melody", 12.0, 7.1, "semitones", 1.7, 1.25, 1),
    ]
    track = None
    if face:
        track = FaceTrackCue(
            probabilities={"neutral": 0.3, "happy": 0.6, "sad": 0.1},
            windows=[{"start_s": 0, "end_s": 2, "probabilities": {"neutral": 0.8, "happy": 0.2}},
                     {"start_s": 1, "end_s": 3, "probabilities": {"neutral": 0.1, "happy": 0.9}}],
            peak_time_s=2.4,
        )  # fmt: skip
    return ClipCueSet(voice=voice, voice_reference="the reference voice", face=track)


def _features(face: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {"voice": rng.standard_normal((40, 384)).astype(np.float32)}
    if face:
        out["face"] = rng.dirichlet(np.ones(8))[None].astype(np.float32)
    return out


def _stats():
    return {s: (np.zeros(d, np.float32), np.ones(d, np.float32)) for s, d in ad.STREAM_DIMS.items()}


def test_recognition_prompt_has_the_streams_and_cues_but_no_answer() -> None:
    prompt = ad.recognition_prompt(["face", "voice"], _cues(), CLASSES)
    assert prompt.startswith("<face><FaceHere></face> <voice><VoiceHere></voice>")
    assert "a higher pitch" in prompt and "Face:" in prompt
    assert prompt.endswith("Which emotion is it: " + ", ".join(CLASSES) + "?")
    assert "recogniser" not in prompt and "%" not in prompt


def test_class_logprobs_are_each_answers_own_likelihood(tiny_model) -> None:
    """The batched scoring (one pass, the prompt once per class) equals each class scored alone
    through EmotionLLM.forward (mean loss x answer tokens)."""
    feats = ad.standardize(_features(), _stats())
    prompt = ad.recognition_prompt(sorted(feats), _cues(), CLASSES)
    batched = ad.class_logprobs(tiny_model, feats, prompt, CLASSES)
    for c in ("happy", "disgust", "surprised"):
        with torch.no_grad():
            out = tiny_model(feats, [prompt], [c])
        assert batched[c] == pytest.approx(-float(out.loss) * out.n_tokens, rel=1e-4, abs=1e-4)
    dist = ad.lm_distribution(batched)
    assert sum(dist.values()) == pytest.approx(1.0) and list(dist) == CLASSES


def test_fusion_weight_zero_is_the_head_and_grows_towards_the_lm() -> None:
    head = dict(zip(CLASSES, [0.4, 0.3, 0.1, 0.05, 0.05, 0.05, 0.05], strict=True))
    lm = dict(zip(CLASSES, [0.05, 0.7, 0.05, 0.05, 0.05, 0.05, 0.05], strict=True))
    assert ad.fuse_with_lm(head, lm, 0.0) == pytest.approx(head)
    assert max(ad.fuse_with_lm(head, lm, 0.0).items(), key=lambda kv: kv[1])[0] == "neutral"
    assert max(ad.fuse_with_lm(head, lm, 1.0).items(), key=lambda kv: kv[1])[0] == "happy"
    fused = ad.fuse_with_lm(head, {**lm, "sad": 0.0}, 2.0)  # a zero stays finite
    assert all(np.isfinite(v) for v in fused.values()) and sum(fused.values()) == pytest.approx(1)


@pytest.mark.parametrize("cue", sorted(ad.PHRASES))
def test_every_training_phrase_is_read_as_its_claim(cue) -> None:
    """The checker reads each phrase as the claim it was written for, and refuses it when the
    measurement goes the other way: the training sentences teach only checkable words."""
    for sign, phrases in ad.PHRASES[cue].items():
        for phrase in phrases:
            sentence = f"Compared with the reference, the voice has {phrase}."
            same = ClipCueSet(voice=[VoiceCue(cue, 1.0, 1.0, "", 0.0, 1.0, sign)])
            other = ClipCueSet(voice=[VoiceCue(cue, 1.0, 1.0, "", 0.0, 1.0, -sign)])
            said = [c for c in claims(sentence, same) if c.cue == cue]
            assert said and all(c.supported for c in said), (phrase, said)
            assert check_sentence(sentence, other), phrase


@pytest.mark.parametrize("seed", range(20))
def test_reasoning_targets_are_true(seed) -> None:
    rng = random.Random(seed)
    directions = [rng.choice((-1, 0, 1)) for _ in range(4)]
    cues = _cues(face=bool(seed % 2))
    for c, d in zip(cues.voice, directions, strict=True):
        c.direction = d
    lead = "Compared with the reference voice, the voice"
    sentences = ad.reasoning_target(cues, lead, ("voice", "face"), rng)
    assert sentences[0].startswith(lead)
    assert len(sentences) == (2 if cues.face else 1)
    assert all(check_sentence(s, cues) == [] for s in sentences)


def test_adapter_folder_round_trip(tiny_model, tmp_path) -> None:
    stats = _stats()
    stats["voice"] = (np.full(384, 0.5, np.float32), np.full(384, 2.0, np.float32))
    out = ad.save_adapter(tiny_model, stats, {"classes": CLASSES, "lm_weight": 0.5}, tmp_path / "a")
    names = {p.name for p in out.iterdir()}
    expected = {"adapter.json", "feature_stats.safetensors", "adapter_config.json",
                "adapter_model.safetensors", "projector.safetensors", "esva_llm.json"}  # fmt: skip
    assert expected <= names
    assert "README.md" not in names
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == TINY_BACKBONE and "peft_version" not in cfg
    loaded = ad.ExplainAdapter.from_pretrained(out)
    assert loaded.classes == CLASSES and loaded.lm_weight == 0.5
    np.testing.assert_array_equal(loaded.stats["voice"][1], stats["voice"][1])
    # the same model answers the same: the saved LoRA + projector are the ones used, merged
    # into the base weights at load (no peft), and the LoRA changes the answer
    feats = _features()
    z = ad.standardize(feats, stats)
    prompt = ad.recognition_prompt(sorted(feats), _cues(), CLASSES)
    mine = ad.class_logprobs(tiny_model, z, prompt, CLASSES)
    assert not hasattr(loaded.model.lm, "get_base_model")
    assert ad.class_logprobs(loaded.model, z, prompt, CLASSES) == pytest.approx(mine, abs=1e-4)
    assert loaded.second_opinion(feats, _cues()) == pytest.approx(
        ad.lm_distribution(mine), abs=1e-5
    )
    with tiny_model.lm.disable_adapter():
        unadapted = ad.class_logprobs(tiny_model, z, prompt, CLASSES)
    assert max(abs(unadapted[c] - mine[c]) for c in CLASSES) > 0.1  # the LoRA mattered
    # a face-only clip (a silent video) is answered too
    only_face = loaded.second_opinion({"face": feats["face"]}, _cues())
    assert sum(only_face.values()) == pytest.approx(1.0)
    (out / "adapter.json").write_text('{"format": "something else"}')
    with pytest.raises(Exception, match="not an esva explanation adapter"):
        ad.ExplainAdapter.from_pretrained(out)


def test_shipped_adapter_every_file_hash_checked() -> None:
    from esva.assets import EXPLAIN_ADAPTER_SHA256, explain_adapter_dir, verify_files
    from esva.errors import EsvaError

    folder = explain_adapter_dir()  # verifies every recorded hash
    shipped = {p.name for p in folder.iterdir() if p.is_file()} - {"MODEL_CARD.md"}
    assert shipped == set(EXPLAIN_ADAPTER_SHA256), shipped ^ set(EXPLAIN_ADAPTER_SHA256)
    assert sum((folder / f).stat().st_size for f in shipped) < 8e6  # a few MB in the package
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "SmolLM2" in card and "CC BY-NC-SA 4.0" in card
    wrong = dict(EXPLAIN_ADAPTER_SHA256)
    wrong["adapter.json"] = "0" * 64
    with pytest.raises(EsvaError, match="does not match its recorded sha256"):
        verify_files(folder, wrong)


# ----------------------------------------------------------------------------- in esva explain


class _Recognizer:
    """The recogniser's contract as esva explain uses it: a prediction over CLASSES and the
    analysis (decoded audio, the whisper-tiny stream)."""

    def predict_with_analysis(self, path, audio=None):
        from types import SimpleNamespace

        from esva.apps.inference import Prediction
        from esva.data.streams import StreamFeatures
        from esva.media.decode import load_audio

        probs = dict(zip(CLASSES, [0.34, 0.33, 0.2, 0.05, 0.04, 0.02, 0.02], strict=True))
        p = Prediction(str(path), "neutral", probs, None, None, ["audio"], [], [], model="fake")
        frames = np.random.default_rng(1).standard_normal((50, 384)).astype(np.float32)
        streams = {"whisper-tiny": StreamFeatures(frames, fps=50.0)}
        clip = load_audio(path, missing_ok=True)
        return p, SimpleNamespace(audio=clip, streams=streams)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    import soundfile as sf

    sr = 16000
    t = np.arange(int(2.0 * sr)) / sr
    f0 = 180 + 40 * np.sin(2 * np.pi * 1.5 * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * 4 * t) > -0.3)
    path = tmp_path_factory.mktemp("media") / "tone.wav"
    sf.write(path, x.astype(np.float32), sr)
    return path


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """The same voice as ``wav``, recorded at 8 kHz (a telephone band)."""
    import soundfile as sf

    sr = 8000
    t = np.arange(int(2.0 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 4 * t) > -0.3)
    path = tmp_path_factory.mktemp("media") / "phone.wav"
    sf.write(path, x.astype(np.float32), sr)
    return path


def test_the_validated_domain_is_audio_only_speech_of_validation_length() -> None:
    ok = {"is_audio": True, "has_voice": True, "sample_rate_hz": 16000, "duration_s": 3.0}
    assert ad.outside_validation(**ok) == []
    assert "a video" in ad.outside_validation(**{**ok, "is_audio": False})[0]
    assert "telephone" in ad.outside_validation(**{**ok, "sample_rate_hz": 8000})[0]
    assert "long" in ad.outside_validation(**{**ok, "duration_s": 600.0})[0]
    assert "long" in ad.outside_validation(**{**ok, "duration_s": 0.4})[0]
    assert "voice" in ad.outside_validation(**{**ok, "has_voice": False})[0]
    assert ad.outside_validation(**{**ok, "sample_rate_hz": None}) == []  # rate unknown


def test_second_opinion_only_reports_outside_the_validated_domain(tiny_model, tmp_path, phone):
    """An 8 kHz clip: the LM (at a weight that would dominate) is reported, not applied."""
    from esva.apps.explain import CueExplainer

    folder = ad.save_adapter(
        tiny_model, _stats(), {"classes": CLASSES, "lm_weight": 50.0}, tmp_path / "a"
    )
    explainer = CueExplainer.with_recognizer(_Recognizer(), asr=False, adapter=folder)
    r = explainer.explain(phone, max_new_tokens=8)
    second = r["second_opinion"]
    assert second["applied"] is False and second["lm_weight"] == 0.0
    assert any("telephone" in why for why in second["not_applied_because"])
    assert r["label"] == "neutral" and r["probabilities"] == second["recogniser_probabilities"]
    assert r["confident"] is True  # the recogniser's own rule
    assert "/" not in r["llm"] and "adapter" in r["llm"]  # a name, not the install path


@pytest.mark.parametrize("weight", [0.0, 50.0])
def test_explain_with_an_adapter_reports_and_fuses_the_second_opinion(
    tiny_model, tmp_path, wav, weight, monkeypatch
) -> None:
    import esva.apps.explain as explain_app
    from esva.apps.explain import CueExplainer

    # as with the recogniser the weight was validated with
    validated = ad.VALIDATED_DOMAIN["recogniser_sha256"]
    monkeypatch.setattr(explain_app, "recogniser_weights", lambda prediction: validated)
    folder = ad.save_adapter(
        tiny_model, _stats(), {"classes": CLASSES, "lm_weight": weight}, tmp_path / "a"
    )
    explainer = CueExplainer.with_recognizer(_Recognizer(), asr=False, adapter=folder)
    r = explainer.explain(wav, max_new_tokens=8)
    second = r["second_opinion"]
    assert second["recogniser_label"] == "neutral" and second["lm_weight"] == weight
    lm = second["lm_probabilities"]
    assert set(lm) == set(CLASSES) and sum(lm.values()) == pytest.approx(1.0, abs=1e-3)
    assert r["modalities"]["adapter"] == ["voice"]
    if weight == 0:  # the recogniser's answer stands
        assert r["label"] == "neutral" and r["probabilities"] == second["recogniser_probabilities"]
    else:  # the LM's distribution dominates the pool
        assert r["label"] == second["lm_label"] and second["applied"] is True
    # Confidence is the recogniser's rule; a label moved by the LM is never confident.
    assert r["confident"] is (r["label"] == second["recogniser_label"])
    assert r["explanation"].endswith(f"Therefore, the emotion is {r['label']}.")
    json.dumps(r)


def test_another_recogniser_makes_the_second_opinion_report_only(tiny_model, tmp_path, wav):
    """The weight was validated with one recogniser; the shipped default's voice model (or a
    user's --model) is another, so the LM reports and the recogniser's answer stands."""
    from esva.apps.explain import CueExplainer, recogniser_weights
    from esva.assets import DEFAULT_MODEL_SHA256

    assert DEFAULT_MODEL_SHA256["model.safetensors"] != ad.VALIDATED_DOMAIN["recogniser_sha256"]
    assert recogniser_weights(type("P", (), {"model": "runs/mine"})()) is None
    folder = ad.save_adapter(
        tiny_model, _stats(), {"classes": CLASSES, "lm_weight": 50.0}, tmp_path / "a"
    )
    explainer = CueExplainer.with_recognizer(_Recognizer(), asr=False, adapter=folder)
    r = explainer.explain(wav, max_new_tokens=8)
    second = r["second_opinion"]
    assert second["applied"] is False and second["lm_weight"] == 0.0
    assert any("another recogniser" in why for why in second["not_applied_because"])
    assert r["label"] == second["recogniser_label"]


def test_adapter_voice_token_reads_hidden_state_2_of_a_stacked_stream():
    """Every frame, pauses too: a speech-only stream's mask is for the voice model's pooling;
    the adapter was trained on whole streams."""
    from esva.apps.explain import adapter_voice_frames
    from esva.data.streams import StreamFeatures

    rng = np.random.default_rng(0)
    stacked = rng.normal(size=(6, 5 * 384)).astype(np.float32)
    mask = np.array([True] * 5 + [False])
    got = adapter_voice_frames(StreamFeatures(stacked, 50.0, 0.0, mask, {"layer": "stack"}))
    np.testing.assert_array_equal(got, stacked[:, 768:1152])
    layer2 = stacked[:, :384]
    got = adapter_voice_frames(StreamFeatures(layer2, 50.0, 0.0, mask, {"layer": "2"}))
    np.testing.assert_array_equal(got, layer2)
    assert adapter_voice_frames(StreamFeatures(layer2, 50.0, 0.0, mask, {"layer": "last"})) is None
