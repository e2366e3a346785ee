"""The MERR-style builder: cues measured from prosody / fer-cnn streams, captions, MERR files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esva.cli.main import main
from esva.data.clip_table import ClipLabel
from esva.data.datasets import merr as merr_dataset
from esva.data.streams import StreamFeatures, clip_path, write_stream
from esva.errors import EsvaError
from esva.llm.parse import label_strict
from esva.recipes import captions as merr

FPS = 50.0


def prosody(f0_hz: float, loud_db: float, syllables_per_s: float, seconds: float = 3.0):
    """A prosody stream: 0.5 s of silence, speech with energy peaks at the given rate, silence."""
    t = np.arange(int(seconds * FPS)) / FPS
    x = np.zeros((len(t), 10), np.float32)
    speech = (t >= 0.5) & (t < seconds - 0.5)
    # One syllable nucleus per cycle: energy swings 6 dB around the level.
    x[:, merr.ENERGY_DB] = np.where(
        speech, loud_db + 3 * np.cos(2 * np.pi * syllables_per_s * (t - 0.5)), -90.0
    )
    x[:, merr.VOICED] = speech
    # A melody: +-3 semitones around f0 over the utterance.
    x[:, merr.LOG2_F0] = np.log2(f0_hz / 100) + 0.25 * np.sin(2 * np.pi * t / seconds)
    x[:, merr.HNR_DB] = np.where(speech, 12.0, 0.0)
    return x, np.ones(len(t), bool)


def fer(sequence: list[str], frames_each: int = 10) -> np.ndarray:
    """fer-cnn features whose logits favour the given expressions, ``frames_each`` frames each."""
    rows = []
    for expression in sequence:
        logits = np.full(len(merr.FACE_LABELS), -2.0, np.float32)
        logits[merr.FACE_LABELS.index(expression)] = 3.0
        rows += [np.concatenate([np.zeros(128, np.float32), logits])] * frames_each
    return np.stack(rows)


def test_voice_cues_measure_what_was_put_in() -> None:
    x, mask = prosody(f0_hz=200, loud_db=-30, syllables_per_s=4.0)
    v = merr.voice_cues(x, mask, FPS)
    assert v is not None
    assert v.f0_hz == pytest.approx(200, rel=0.05)
    assert 4.0 < v.f0_range_st < 7.0  # the melody spans +-3 st
    assert v.loudness_db == pytest.approx(-30, abs=1.5)
    assert v.active_s == pytest.approx(2.0, abs=0.1)  # the silence is left out
    assert v.rate_per_s == pytest.approx(4.0, abs=0.6)
    slow = merr.voice_cues(*prosody(200, -30, 2.0), FPS)
    assert slow.rate_per_s < v.rate_per_s - 1.0
    silent = np.zeros((50, 10), np.float32)
    assert merr.voice_cues(silent, np.zeros(50, bool), FPS) is None


def test_face_cues_trajectory_and_peak() -> None:
    feats = fer(["neutral", "neutral", "happy"])  # 30 frames, happy at the end
    mask = np.ones(len(feats), bool)
    mask[:3] = False  # no face in the first frames
    f = merr.face_cues(feats, mask, fps=25.0, start_s=0.2)
    assert f.trajectory[0] == "neutral" and f.trajectory[-1] == "happy"
    assert f.peak_expression == "happy" and f.peak_frame >= 20
    assert f.peak_time_s == pytest.approx(0.2 + f.peak_frame / 25.0)
    assert f.coverage == pytest.approx(27 / 30)
    assert merr.face_cues(feats, np.zeros(len(feats), bool), 25.0) is None


def test_relative_to_speaker_and_reasoning() -> None:
    cues = []
    for i, (label, f0, loud, rate) in enumerate(
        [("neutral", 120, -35, 3.5), ("neutral", 121, -35, 3.5), ("angry", 170, -25, 5.0)]
    ):
        v = merr.voice_cues(*prosody(f0, loud, rate), FPS)
        cues.append(merr.ClipCues(f"c{i}", label, "Kids are talking", "s1", "male", voice=v))
    lone = merr.voice_cues(*prosody(150, -30, 4.0), FPS)
    cues.append(merr.ClipCues("other", "sad", None, "s2", None, voice=lone))
    merr.relate_to_speakers(cues)
    angry = cues[2].voice
    assert angry.pitch_rel_st > 5 and angry.loudness_rel_db > 8 and angry.rate_rel > 1.2
    assert cues[3].voice.pitch_rel_st is None  # a speaker with one clip has no baseline

    text = merr.reason(cues[2])
    assert text.endswith("his emotional state is: angry.")
    assert "higher pitch" in text and "louder voice" in text and "high arousal" in text
    assert "fit angry" in text
    classes = ["neutral", "angry", "sad", "happy"]
    for c in cues:
        assert label_strict(merr.reason(c), classes) == c.label  # the conclusion parses
    assert "Hz" in merr.describe(cues[3]) and '"Kids are talking"' in merr.describe(cues[0])
    with pytest.raises(EsvaError, match="no label"):
        merr.reason(merr.ClipCues("x"))


def _store(root: Path, labels: dict[str, str]) -> list[ClipLabel]:
    clips = []
    for i, (name, label) in enumerate(labels.items()):
        x, mask = prosody(120 + 30 * i, -35 + 3 * i, 3.0 + i)
        write_stream(clip_path(root, "prosody", name), StreamFeatures(x, FPS, 0.0, mask))
        write_stream(clip_path(root, "fer-cnn", name), StreamFeatures(fer([label]), 25.0))
        clips.append(ClipLabel(name, label, speaker="s1"))
    return clips


def test_builder_writes_merr_files_that_read_back(tmp_path: Path) -> None:
    labels = {"a": "happy", "b": "sad", "c": "angry"}  # MERR's own classes
    clips = _store(tmp_path / "store", labels)
    cues = merr.cues_from_store(
        tmp_path / "store", clips, transcripts={"a": "I won!", "b": "It is over."}
    )
    assert cues[0].transcript == "I won!" and cues[2].transcript is None
    assert cues[0].face.peak_expression == "happy" and cues[0].voice.pitch_rel_st is not None
    coarse, fine = merr.build_merr(cues)
    assert set(coarse) == set(fine) == set(labels)
    paths = merr.write_merr(tmp_path / "merr", coarse, fine)
    assert set(paths) == {"coarse", "fine", "labels"}

    # Round trip through esva's MERR reader: same entries, captions and labels.
    assert merr_dataset.read_merr_json(paths["fine"]) == fine
    assert merr_dataset.read_merr_json(paths["coarse"]) == coarse
    loaded = merr_dataset.load(tmp_path / "merr", media=False)
    assert {c.name: c.label for c in loaded} == labels
    for clip in loaded:
        assert clip.extra["smp_reason_caption"].endswith(f"state is: {labels[clip.name]}.")
        assert clip.extra["caption"] == coarse[clip.name]["caption"]
    assert fine["a"]["cues"]["face"]["peak_expression"] == "happy"
    assert merr.read_reasoning(paths["fine"])["b"] == fine["b"]["smp_reason_caption"]

    # Labels outside MERR's nine classes: the JSON files, but no annotation list.
    other = merr.write_merr(tmp_path / "merr2", coarse, {"a": {**fine["a"], "label": "calm"}})
    assert "labels" not in other and not (tmp_path / "merr2" / merr_dataset.FINE_LIST).exists()


def test_rewrites_are_checked(tmp_path: Path) -> None:
    rewriter = merr.LMRewriter(backbone="tiny-random-llama", classes=["happy", "sad"])
    text = "He smiles. Therefore, it is inferred that his emotional state is: happy."
    assert rewriter.accept("A broad smile: his emotional state is: happy.", text, "happy")
    assert not rewriter.accept("He looks sad.", text, "happy")  # the label changed
    assert not rewriter.accept("happy " * 100, text, "happy")  # far longer than the template
    # The random tiny LM writes gibberish: rejected, and the template is kept.
    cues = [merr.ClipCues("x", "happy", voice=merr.voice_cues(*prosody(150, -30, 4), FPS))]
    rewriter.max_new_tokens = 16
    _, fine = merr.build_merr(cues, rewriter)
    assert fine["x"]["smp_reason_caption"] == merr.reason(cues[0])


def test_command_line(tmp_path: Path, capsys) -> None:
    clips = _store(tmp_path / "store", {"a": "happy", "b": "sad"})
    with open(tmp_path / "store" / "labels.csv", "w") as handle:
        handle.write("name,discrete,speaker\n")
        handle.writelines(f"{c.name},{c.label},{c.speaker}\n" for c in clips)
    assert main(["captions", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "m")]) == 0
    assert set(merr.read_reasoning(tmp_path / "m" / merr_dataset.FINE_JSON)) == {"a", "b"}
    assert main(["captions", "--store", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "labels file not found" in capsys.readouterr().err
