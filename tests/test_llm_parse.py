"""``esva.llm.parse``: Emotion-LLaMA's last-word rule, the strict parser, open-vocabulary words."""

from __future__ import annotations

from itertools import combinations

import pytest

from esva.evaluate.wheel import lexicon_from_formats
from esva.labelsets import RAVDESS_CLASSES
from esva.llm.parse import (
    OV_LEXICON,
    SYNONYM_GROUPS,
    class_lexicon,
    emotion_words,
    label_last_word,
    label_strict,
)


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("happy", "happy"),
        ("The emotion label is sad", "sad"),
        ("Therefore, it is inferred that his emotional state is: angry", "angry"),
        ("It is happy.", "neutral"),  # trailing period: not a class word -> neutral
        ("Happy", "neutral"),  # case matters in the original
        ("surprised", "neutral"),  # not the class spelling
        ("sad\n", "neutral"),  # split(" ") keeps the newline
        ("", "neutral"),
        ("fear", "neutral"),  # not one of MER2023's six
    ],
)
def test_last_word_rule_is_emotion_llamas(answer: str, label: str) -> None:
    assert label_last_word(answer) == label


def test_last_word_rule_other_class_set() -> None:
    assert label_last_word("I think fearful", RAVDESS_CLASSES) == "fearful"
    assert label_last_word("I think scared", RAVDESS_CLASSES, fallback="calm") == "calm"


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("happy", "happy"),
        ("It is happy.", "happy"),
        ("HAPPY!", "happy"),
        ("The woman is clearly furious about it.", "angry"),  # synonym
        ("She isn't happy at all; she seems sad.", "sad"),  # negation
        ("He is not happy.", None),
        ("There is no sign of anger, he is calm and neutral.", "neutral"),
        ("Neither happy nor sad.", None),
        ("Not angry, but worried about the results.", "worried"),  # negation ends at 'but'
        ("A surprised look, then anxiety.", "surprise"),  # first class word wins
        # A stated conclusion wins over clue words that come earlier.
        ("The raised brows suggest surprise. Therefore, his emotional state is: sad", "sad"),
        ("The emotion label is not happy; he is worried.", "worried"),
        ("The video shows a person talking.", None),
        ("", None),
    ],
)
def test_strict_parser(answer: str, label: str | None) -> None:
    assert label_strict(answer) == label


def test_strict_parser_class_sets() -> None:
    # RAVDESS spells the classes differently: synonyms map to whichever spelling is in the set.
    assert label_strict("She looks scared.", RAVDESS_CLASSES) == "fearful"
    assert label_strict("pure astonishment", RAVDESS_CLASSES) == "surprised"
    assert label_strict("She looks scared.") is None  # no fear class among MER2023's six
    assert label_strict("relaxed and peaceful", RAVDESS_CLASSES) == "calm"
    assert label_strict("answer: disgust", ["Disgust", "Joy"]) == "Disgust"  # original spelling


def test_synonym_groups_do_not_overlap() -> None:
    for a, b in combinations(SYNONYM_GROUPS, 2):
        assert not a & b, a & b
    lexicon = class_lexicon(RAVDESS_CLASSES)
    assert lexicon["furious"] == "angry" and lexicon["afraid"] == "fearful"


def test_emotion_words() -> None:
    answer = (
        "Her voice trembles with anxiety and she seems confused, not angry. "
        "Later she is happy, happy and relieved."
    )
    assert emotion_words(answer) == ["anxious", "confused", "happy", "relieved"]
    assert emotion_words("No emotion words here.") == []
    assert all(base in OV_LEXICON for base in OV_LEXICON.values())
    custom = {"glum": "sad", "chuffed": "happy"}
    assert emotion_words("glum, then chuffed", custom) == ["sad", "happy"]


def test_emotion_words_with_mer2025_formats(shared_data) -> None:
    path = shared_data / "mer_reference" / "emotion_wheel" / "format.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    lexicon = lexicon_from_formats(path)
    assert len(lexicon) > 1000
    words = emotion_words("He answered angrily and seemed somewhat helpless.", lexicon)
    assert words and all(w in set(lexicon.values()) for w in words)
    assert lexicon["angrily"] in words
