"""The cue checker: a sentence may only claim what was measured (esva.llm.cues)."""

from __future__ import annotations

import pytest

from esva.llm.cues import (
    ClipCueSet,
    FaceTrackCue,
    VoiceCue,
    check_sentence,
    claims,
    cue_sentences,
    direction,
    split_sentences,
)


def _voice(pitch: int = 1, loud: int = 0, pace: int = -1, melody: int = 0) -> list[VoiceCue]:
    return [
        VoiceCue("pitch", 250.0, 207.0, "Hz", 3.3 * pitch, 1.5, pitch),
        VoiceCue("loudness", -44.0, -46.0, "dBFS", 2.0, 3.0, loud),
        VoiceCue("pace", 3.0, 4.2, "syllables/s", 0.7, 1.15, pace),
        VoiceCue("melody", 7.0, 7.1, "semitones", 0.99, 1.25, melody),
    ]


def _face(top: str = "happy", later: str | None = None) -> FaceTrackCue:
    def dist(lead: str) -> dict[str, float]:
        return {k: (0.7 if k == lead else 0.05) for k in ("neutral", "happy", "sad", "angry")}

    windows = [{"start_s": 0.0, "end_s": 2.0, "probabilities": dist(top)}]
    if later:
        windows.append({"start_s": 0.5, "end_s": 2.5, "probabilities": dist(later)})
    return FaceTrackCue(dist(top), windows, peak_time_s=1.2, coverage=1.0)


def test_direction_needs_the_margin() -> None:
    assert direction(1.6, 1.5) == 1 and direction(-1.6, 1.5) == -1 and direction(1.4, 1.5) == 0
    assert direction(1.2, 1.15, ratio=True) == 1
    assert direction(0.8, 1.15, ratio=True) == -1
    assert direction(0.9, 1.15, ratio=True) == 0


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("She speaks with a higher pitch than usual.", True),
        ("The voice has a lower pitch.", False),  # measured higher
        ("Her pitch is raised and she speaks slowly.", True),
        ("She speaks quickly.", False),  # measured slower
        ("She is shouting.", False),  # loudness within the margin
        ("Her voice is louder than the reference.", False),
        ("Her voice is not louder than usual.", True),  # negated: no claim
        ("The melody is flat.", False),  # melody within the margin
        ("The clip is about dogs by a door.", True),  # no cue claim: not judged
        # SmolLM2's own words on a real clip whose pitch was measured higher:
        ("The voice is slightly lower in frequency compared to the female voice.", False),
        ("Her voice is deeper.", False),
        ("The voice is high in terms of tone but low on frequency response.", False),
        ("The voice is high in terms of tone.", True),
        ("The voice is higher in tone.", True),
        ("She speaks at a higher volume.", False),
    ],
)
def test_voice_claims_against_measurements(sentence: str, ok: bool) -> None:
    cues = ClipCueSet(voice=_voice(), voice_reference="the reference")
    assert (check_sentence(sentence, cues) == []) is ok


def test_face_claims_need_the_expression_to_lead() -> None:
    cues = ClipCueSet(face=_face("neutral", later="happy"))
    assert check_sentence("She smiles towards the end.", cues) == []  # happy leads a window
    assert check_sentence("Her face looks sad.", cues)  # sad never leads
    assert check_sentence("She frowns.", cues)  # angry never leads
    assert check_sentence("Her face is not sad.", cues) == []
    only_neutral = ClipCueSet(face=_face("neutral"))
    assert check_sentence("She smiles.", only_neutral)


def test_a_claim_about_an_unmeasured_modality_fails() -> None:
    voice_only = ClipCueSet(voice=_voice())
    bad = check_sentence("She smiles and her voice has a higher pitch.", voice_only)
    assert [c.cue for c in bad] == ["face"]
    face_only = ClipCueSet(face=_face())
    assert [c.cue for c in check_sentence("The voice is louder.", face_only)] == ["loudness"]


def test_claims_report_what_was_measured() -> None:
    cues = ClipCueSet(voice=_voice())
    (claim,) = claims("A higher pitch.", cues)
    assert (claim.cue, claim.expected, claim.measured, claim.supported) == ("pitch", 1, 1, True)


def test_cue_sentences_pass_their_own_check() -> None:
    for voice in (_voice(), _voice(0, 0, 0, 0), _voice(-1, -1, 1, 1)):
        cues = ClipCueSet(voice=voice, voice_reference="the reference", face=_face("sad"))
        sentences = cue_sentences(cues)
        assert len(sentences) == 2
        for s in sentences:
            assert check_sentence(s, cues) == [], s


def test_prompt_lines_state_reference_and_margin() -> None:
    cues = ClipCueSet(voice=_voice(), voice_reference="the reference", transcript="hello")
    (voice, words) = cues.lines()
    assert "+3.3 semitones against the reference 207.0 Hz; margin 1.5 semitones" in voice
    assert words == 'Words: "hello".'


def test_split_sentences() -> None:
    assert split_sentences("One. Two! Three? four") == ["One.", "Two!", "Three?", "four"]
