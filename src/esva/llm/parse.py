"""Generated answers -> a class label, or -> open-vocabulary emotion words.

Two label rules:

- :func:`label_last_word` is Emotion-LLaMA's, reproduced exactly (``eval_emotion.py``)::

      answers[j] = answers[j].split(" ")[-1]
      if answers[j] not in ['neutral', 'angry', 'happy', 'sad', 'worried', 'surprise']:
          answers[j] = 'neutral'

  No lower-casing or punctuation stripping: ``"It is happy."`` gives ``neutral``. Every
  unparseable answer silently becomes ``neutral``, which flatters a model on neutral-heavy sets;
  report the strict parser beside it.
- :func:`label_strict` reads the answer as text: a conclusion phrase ("... emotional state is:
  sad") wins if there is one, otherwise the first class word (or a synonym of one: "furious" ->
  angry) that is not negated ("not happy", "no sign of anger", "neither happy nor sad" name no
  class). It returns None when no class is named, so unparseable answers can be counted.

:func:`emotion_words` turns an answer into open-vocabulary emotion words (for ``esva score ov``
and the emotion-wheel variant): every non-negated word of an emotion lexicon, mapped to its base
form, once, in order of appearance. The built-in lexicon is small;
:func:`esva.evaluate.wheel.lexicon_from_formats` loads MER2025's ``format.csv`` (1255 emotion
words with their inflections) instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

# MER2023's six classes (MERTools' order): the set Emotion-LLaMA's rule checks against.
MER2023_LABELS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")

# Groups of words naming one emotion concept. A class name picks the group that contains it,
# so "fearful" (RAVDESS) and "fear" (Emotion-LLaMA) both get the fear group; groups without a
# class in the label set are ignored. No word is in two groups.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(g.split())
    for g in (
        "happy happiness happily joy joyful joyous glad cheerful delighted pleased elated "
        "excited excitement",
        "sad sadness sadly unhappy sorrow sorrowful depressed gloomy grief grieving melancholy "
        "heartbroken disappointed disappointment",
        "angry anger angrily furious fury mad rage enraged irritated irritation annoyed "
        "annoyance frustrated frustration hostile outraged resentful",
        "worried worry worrying anxious anxiety nervous nervousness concerned uneasy tense "
        "apprehensive",
        "surprise surprised surprising astonished astonishment amazed amazement shocked "
        "startled stunned",
        "neutral neutrality indifferent expressionless unemotional",
        "calm calmly calmness relaxed peaceful serene tranquil",
        "fear fearful afraid scared frightened terrified terror panic panicked",
        "disgust disgusted disgusting revulsion repulsed",
        "contempt contemptuous scorn scornful disdain disdainful",
        "doubt doubtful skeptical sceptical suspicious",
    )
)

# Words that negate what follows, within NEGATION_WINDOW words and the same clause.
NEGATORS = frozenset(
    ["not", "no", "never", "without", "neither", "nor", "hardly", "lack", "lacks", "lacking"]
)
NEGATION_WINDOW = 3
_CLAUSE_BREAK = frozenset(["but", "however", "although", "though", "yet", "whereas", "instead"])
_TOKEN = re.compile(r"[a-z]+|[.,;:!?\n]")
# "emotional state is: sad", "the emotion label is angry", "emotion: happy", "label = worried"
_CONCLUSION = re.compile(
    r"(?:emotion(?:al)?(?:\s+(?:state|label|category|class))?|label|category)"
    r"\s*(?:is|:|=|would be|should be)\s*:?\s*(?:most\s+likely\s+)?[\"'(]*([a-z]+)"
)


def label_last_word(
    answer: str, classes: Sequence[str] = MER2023_LABELS, fallback: str = "neutral"
) -> str:
    """Emotion-LLaMA's rule: the last space-separated word if it is a class, else ``fallback``."""
    word = answer.split(" ")[-1]
    return word if word in classes else fallback


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Lower-case words with a flag "negated", and punctuation (flag False)."""
    text = text.lower().replace("\u2019", "'").replace("n't", " not")
    out: list[tuple[str, bool]] = []
    negated_until = -1
    for i, tok in enumerate(_TOKEN.findall(text)):
        if not tok.isalpha() or tok in _CLAUSE_BREAK:
            negated_until = -1  # a negation does not reach past its clause
            out.append((tok, False))
            continue
        out.append((tok, i <= negated_until))
        if tok in NEGATORS:
            negated_until = i + NEGATION_WINDOW
    return out


def class_lexicon(
    classes: Sequence[str], synonyms: Iterable[Iterable[str]] = SYNONYM_GROUPS
) -> dict[str, str]:
    """``word -> class`` for the class names and the synonyms of their groups."""
    lexicon: dict[str, str] = {}
    for cls in classes:
        key = cls.lower()
        for group in synonyms:
            if key in group:
                lexicon.update(dict.fromkeys(group, cls))
        lexicon[key] = cls  # a class name always names itself
    return lexicon


def label_strict(
    answer: str,
    classes: Sequence[str] = MER2023_LABELS,
    synonyms: Iterable[Iterable[str]] = SYNONYM_GROUPS,
    prefer_conclusion: bool = True,
) -> str | None:
    """The class an answer names (see the module doc), or None when it names none."""
    lexicon = class_lexicon(classes, synonyms)
    if prefer_conclusion:
        conclusions = [m for m in _CONCLUSION.finditer(answer.lower()) if m.group(1) in lexicon]
        if conclusions:
            return lexicon[conclusions[-1].group(1)]  # the last one: the final verdict
    for word, negated in _tokens(answer):
        if not negated and word in lexicon:
            return lexicon[word]
    return None


# ----------------------------------------------------------------------------- open vocabulary

# Built-in open-vocabulary lexicon: base word -> other forms. Base words are adjectives, the
# form MER2024's open-vocabulary labels use ("angry", "confused", "helpless").
_OV_FORMS: dict[str, str] = {
    "happy": "happiness happily joy joyful joyous glad cheerful",
    "sad": "sadness sadly sorrow sorrowful",
    "angry": "anger angrily",
    "worried": "worry worrying",
    "surprised": "surprise surprising",
    "neutral": "neutrality",
    "calm": "calmly calmness",
    "fearful": "fear afraid",
    "disgusted": "disgust disgusting",
    "contemptuous": "contempt",
    "doubtful": "doubt",
    "anxious": "anxiety anxiously",
    "nervous": "nervousness nervously",
    "frustrated": "frustration frustrating",
    "annoyed": "annoyance annoying",
    "irritated": "irritation irritable",
    "furious": "fury furiously",
    "excited": "excitement exciting",
    "delighted": "delight",
    "pleased": "pleasure",
    "satisfied": "satisfaction",
    "relaxed": "relaxation",
    "relieved": "relief",
    "confused": "confusion confusing",
    "helpless": "helplessness",
    "disappointed": "disappointment disappointing",
    "depressed": "depression",
    "embarrassed": "embarrassment embarrassing",
    "ashamed": "shame",
    "guilty": "guilt",
    "lonely": "loneliness",
    "bored": "boredom",
    "tired": "tiredness",
    "hopeful": "hope",
    "hopeless": "hopelessness",
    "grateful": "gratitude",
    "jealous": "jealousy",
    "curious": "curiosity",
    "proud": "pride",
    "shocked": "shock",
    "scared": "",
    "terrified": "terror",
    "frightened": "",
    "amazed": "amazement",
    "astonished": "astonishment",
    "tense": "tension",
    "uneasy": "unease",
    "concerned": "",
    "sarcastic": "sarcasm",
    "serious": "seriousness",
    "determined": "determination",
    "loving": "love",
    "affectionate": "affection",
    "sympathetic": "sympathy",
    "hurt": "",
    "upset": "",
    "resentful": "resentment",
    "hostile": "hostility",
    "impatient": "impatience",
    "indifferent": "indifference",
    "suspicious": "suspicion",
    "skeptical": "skepticism",
    "enthusiastic": "enthusiasm",
    "agitated": "agitation",
    "despairing": "despair",
    "grieving": "grief",
    "miserable": "misery",
    "cheerful": "",
    "elated": "elation",
    "amused": "amusement",
}
OV_LEXICON: dict[str, str] = {
    form: base for base, forms in _OV_FORMS.items() for form in [base, *forms.split()]
}


def emotion_words(answer: str, lexicon: Mapping[str, str] | None = None) -> list[str]:
    """Open-vocabulary emotion words of an answer: non-negated lexicon words, as base forms."""
    lexicon = OV_LEXICON if lexicon is None else lexicon
    words: list[str] = []
    for word, negated in _tokens(answer):
        base = lexicon.get(word)
        if base is not None and not negated and base not in words:
            words.append(base)
    return words
