"""MER2025 emotion-wheel (EW) scorer: open-vocabulary words scored through 5 emotion wheels.

MER2025 Track 2/3 replaced the per-sample GPT synonym step of MER2024 by a fixed, deterministic
mapping (MERTools ``MER2025_Track23/my_affectgpt/evaluation/wheel.py``). A word is mapped in
three steps, and dropped when any step fails:

1. ``format_mapping`` (from ``format.csv``): a word form -> its base words (``"angrily"`` ->
   ``["angry"]``; every base word also maps to itself);
2. ``raw_mapping`` (from ``synonym.xlsx``, 8 GPT runs merged): a base word -> the wheel words
   it is a synonym of;
3. a wheel map (from ``wheelN.xlsx``): a wheel word -> its cluster at ``level1`` (the inner
   ring, e.g. ``"furious"`` -> ``"mad"``) or ``level2`` (the middle ring). Of all candidates
   from steps 1-2 the alphabetically first one present on the wheel wins
   (``func_backward_case3``), which makes the result unique.

For each of the 5 wheels, per sample with G, P the mapped sets: accuracy (MERTools calls it
precision) = |G∩P| / |P|, recall = |G∩P| / |G|, both 0 when P is empty, and samples whose G is
empty are skipped. Each is averaged over samples, the wheel's F-score is their harmonic mean
(0 when both are 0), and the three numbers are averaged over the 5 wheels
(``wheel_metric_calculation``). **The official MER2025 headline metric is ``fscore``** (EW-F1 at
level1); ``average`` = (accuracy + recall) / 2 is added to keep MER2024's scheme.

Two mapping sources are supported (``source``):

- ``"mer2025"`` (default): build the maps from ``format.csv``, ``synonym.xlsx`` and
  ``wheel1-5.xlsx`` exactly as MERTools' MER2025 code does (``read_format2raws``,
  ``read_candidate_synonym_merge``, ``func_get_wheel_cluster``);
- ``"mer2026"``: load the precomputed ``wheel_mapping.npz`` that the MER2026 code reads instead.
  Its ``raw_mapping`` and wheel maps equal the ones built from the spreadsheets, but its
  ``format_mapping`` has 7356 entries instead of 7386: the "-less" words (``helpless``,
  ``fearless``, ``worthless``, ...) and two others lost their inflected forms, so e.g. ``"help"``
  is dropped instead of being read as ``"helpless"``. Scores can therefore differ slightly.
  The npz stores pickled dicts; it is read by :mod:`esva.evaluate.npz_data`, which rebuilds
  plain dicts/lists/strings from the pickle opcodes without unpickling (no code in the file can
  run; a file that refers to any function is refused).

Conformance notes: gold/prediction lists are parsed with MER2025's ``string_to_list`` (split on
quotes and commas, strip; :func:`~esva.evaluate.mer_files.parse_list_mer2025`) and lower-cased. The
scorer was checked against the mapping files, not against a published score on real predictions
(none ships with the reference files), so exact agreement with the official numbers on a full
MER2025 submission is untested.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esva.errors import EsvaError
from esva.evaluate.mer_files import (
    check_names,
    parse_column,
    parse_list_mer2025,
    parse_list_strict,
    read_openset,
)
from esva.tables import read_rows

WHEELS: tuple[str, ...] = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5")
LEVELS: tuple[str, ...] = ("level1", "level2")
SOURCES: tuple[str, ...] = ("mer2025", "mer2026")
SYNONYM_RUNS: tuple[str, ...] = tuple(f"run{i}" for i in range(1, 9))


@dataclass(frozen=True)
class WheelMapping:
    """The three mapping stages (see module doc)."""

    format_mapping: dict[str, list[str]]  # word form -> base words
    raw_mapping: dict[str, list[str]]  # base word -> wheel words
    wheel_maps: dict[str, dict[str, dict[str, str]]]  # wheel -> level -> wheel word -> cluster
    source: str = "mer2025"


# ----------------------------------------------------------------------------- building the maps
def _xlsx_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of the first sheet as ``{header: value}`` (empty cells None, blank rows skipped)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise EsvaError("file not found", path) from None
    except Exception as exc:  # openpyxl raises zipfile / KeyError / InvalidFileException alike
        raise EsvaError(f"is not a readable .xlsx file ({type(exc).__name__})", path) from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        for values in rows:
            if any(v is not None for v in values):
                yield dict(zip(header, values, strict=False))
    finally:
        book.close()


def _cell(row: Mapping[str, Any], column: str, path: Path) -> str | None:
    if column not in row:
        raise EsvaError(f"has no column {column!r}", path)
    value = row[column]
    return None if value is None else str(value)


def read_wheel(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """``wheelN.xlsx`` -> ``{level1: {level2: [level3, ...]}}`` (MERTools ``read_wheel_to_map``).

    The sheet lists a level1/level2 word only on its first row, so empty cells repeat the word
    above; words are lower-cased and stripped.
    """
    path = Path(path)
    tree: dict[str, dict[str, list[str]]] = {}
    level1 = level2 = level3 = ""
    for row in _xlsx_rows(path):
        level1 = (_cell(row, "level1", path) or level1).lower().strip()
        level2 = (_cell(row, "level2", path) or level2).lower().strip()
        level3 = (_cell(row, "level3", path) or level3).lower().strip()
        tree.setdefault(level1, {}).setdefault(level2, []).append(level3)
    if not tree:
        raise EsvaError("has no wheel rows", path)
    return tree


def wheel_clusters(tree: Mapping[str, Mapping[str, Sequence[str]]], level: str) -> dict[str, str]:
    """Wheel word -> its cluster (MERTools ``func_get_wheel_cluster``).

    ``level1``: every word maps to its inner-ring word. ``level2``: words map to their
    middle-ring word, and an inner-ring word to its alphabetically first middle-ring child.
    """
    clusters: dict[str, str] = {}
    for level1, children in tree.items():
        clusters[level1] = level1 if level == "level1" else sorted(children)[0]
        for level2, leaves in children.items():
            target = level1 if level == "level1" else level2
            clusters[level2] = target
            for level3 in leaves:
                clusters[level3] = target
    return clusters


def _merge(a: Mapping[str, list[str]], b: Mapping[str, list[str]]) -> dict[str, list[str]]:
    # MERTools' func_merge_map; the set() order does not matter, every use sorts the list.
    merged = dict(a)
    for key, value in b.items():
        merged[key] = list(set(a[key] + value)) if key in a else value
    return merged


def read_synonyms(path: str | Path) -> dict[str, list[str]]:
    """``synonym.xlsx`` -> ``{word: [wheel words]}``, the 8 runs merged (MERTools
    ``read_candidate_synonym_merge``): each wheel word maps to itself, each of its synonyms to it.
    """
    path = Path(path)
    runs: dict[str, dict[str, list[str]]] = {run: {} for run in SYNONYM_RUNS}
    for row in _xlsx_rows(path):
        for run, mapping in runs.items():
            word = _cell(row, f"word_{run}", path)
            if word is None:
                continue
            raw = word.strip().lower()
            mapping.setdefault(raw, []).append(raw)
            for synonym in parse_list_mer2025(_cell(row, f"synonym_{run}", path) or ""):
                mapping.setdefault(synonym.strip().lower(), []).append(raw)
    merged: dict[str, list[str]] = {}
    for mapping in runs.values():
        merged = _merge(merged, mapping)
    return merged


def read_formats(path: str | Path) -> dict[str, list[str]]:
    """``format.csv`` (``name,format``) -> ``{word form: [base words]}`` (``read_format2raws``)."""
    path = Path(path)
    header, rows = read_rows(path, allow_empty=True)
    if not {"name", "format"} <= set(header):
        raise EsvaError(f"wrong CSV columns: expected name,format, found {header}", path)
    mapping: dict[str, list[str]] = {}
    for row in rows:
        raw = row["name"] or ""
        for form in parse_list_mer2025(row["format"] or ""):
            mapping.setdefault(form, []).append(raw)
        mapping.setdefault(raw, []).append(raw)
    return mapping


def lexicon_from_formats(path: str | Path) -> dict[str, str]:
    """``word form -> base word`` from MER2025's ``format.csv`` (first base of each form)."""
    return {
        form.lower(): bases[0].lower()
        for form, bases in read_formats(path).items()
        if bases and form.isalpha()
    }


def load_wheel_mapping(wheel_dir: str | Path, source: str = "mer2025") -> WheelMapping:
    """Load the emotion-wheel mapping from MERTools' ``emotion_wheel`` folder (see module doc)."""
    wheel_dir = Path(wheel_dir)
    if source not in SOURCES:
        raise EsvaError(f"unknown mapping source {source!r} (choose {', '.join(SOURCES)})")
    if not wheel_dir.is_dir():
        raise EsvaError("wheel directory not found", wheel_dir)
    if source == "mer2026":
        return _load_npz(wheel_dir / "wheel_mapping.npz")
    wheel_maps = {}
    for wheel in WHEELS:
        tree = read_wheel(wheel_dir / f"{wheel}.xlsx")
        wheel_maps[wheel] = {level: wheel_clusters(tree, level) for level in LEVELS}
    return WheelMapping(
        format_mapping=read_formats(wheel_dir / "format.csv"),
        raw_mapping=read_synonyms(wheel_dir / "synonym.xlsx"),
        wheel_maps=wheel_maps,
        source="mer2025",
    )


def _load_npz(path: Path) -> WheelMapping:
    from esva.evaluate.npz_data import load_npz_data

    # Never np.load(allow_pickle=True): a crafted npz runs any command while unpickling.
    parts = load_npz_data(path, ("format_mapping", "raw_mapping", "wheel_map_whole"))
    wheels = parts["wheel_map_whole"]
    if not all(isinstance(v, dict) for v in parts.values()) or not all(
        isinstance(wheels.get(w), dict)
        and all(isinstance(wheels[w].get(level), dict) for level in LEVELS)
        for w in WHEELS
    ):
        raise EsvaError("does not hold the expected mapping dictionaries", path)
    for key in ("format_mapping", "raw_mapping"):
        if not all(_is_words(k, v) for k, v in parts[key].items()):
            raise EsvaError(f"{key} is not a map of words to word lists", path)
    if not all(
        all(isinstance(k, str) and isinstance(v, str) for k, v in wheels[w][lv].items())
        for w in WHEELS
        for lv in LEVELS
    ):
        raise EsvaError("wheel_map_whole is not a map of words to clusters", path)
    return WheelMapping(
        parts["format_mapping"],
        parts["raw_mapping"],
        {w: {lv: wheels[w][lv] for lv in LEVELS} for w in WHEELS},
        "mer2026",
    )


def _is_words(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and isinstance(value, list)
        and all(isinstance(word, str) for word in value)
    )


# ----------------------------------------------------------------------------- scoring
def map_label(label: str, mapping: WheelMapping, wheel_map: Mapping[str, str]) -> str:
    """Map one (lower-cased) word to its wheel cluster, or ``""`` when it falls off the wheel."""
    if label not in mapping.format_mapping:
        return ""
    candidates = [
        raw for form in mapping.format_mapping[label] for raw in mapping.raw_mapping.get(form, [])
    ]
    for candidate in sorted(candidates):
        if candidate in wheel_map:
            return wheel_map[candidate]
    return ""


def score_wheel(
    gold: Mapping[str, Sequence[str]],
    pred: Mapping[str, Sequence[str]],
    mapping: WheelMapping,
    level: str = "level1",
) -> dict[str, Any]:
    """Score parsed word lists through the 5 wheels (see module doc).

    Returns ``accuracy, recall, fscore`` (each averaged over the wheels), ``average`` (mean of
    accuracy and recall), ``n`` (gold names) and ``per_wheel`` (``{wheel: {accuracy, recall,
    fscore, n}}`` where ``n`` counts the samples whose gold words reach that wheel).
    """
    if level not in LEVELS:
        raise EsvaError(f"unknown wheel level {level!r} (choose {', '.join(LEVELS)})")
    names = check_names(gold, pred)
    per_wheel: dict[str, dict[str, float]] = {}
    whole_scores = []
    for wheel in WHEELS:
        wheel_map = mapping.wheel_maps[wheel][level]
        cache: dict[str, str] = {}

        def mapped(
            words: Sequence[str],
            wheel_map: Mapping[str, str] = wheel_map,
            cache: dict[str, str] = cache,
        ) -> set[str]:
            out = set()
            for word in words:
                key = word.lower().strip()
                if key not in cache:
                    cache[key] = map_label(key, mapping, wheel_map)
                if cache[key]:
                    out.add(cache[key])
            return out

        accuracy, recall = [], []
        for name in names:
            g, p = mapped(gold[name]), mapped(pred[name])
            if not g:
                continue
            hit = len(g & p)
            accuracy.append(hit / len(p) if p else 0.0)
            recall.append(hit / len(g) if p else 0.0)
        acc = float(np.mean(accuracy)) if accuracy else 0.0
        rec = float(np.mean(recall)) if recall else 0.0
        fscore = 0.0 if acc + rec == 0 else 2 * acc * rec / (acc + rec)
        per_wheel[wheel] = {"accuracy": acc, "recall": rec, "fscore": fscore, "n": len(accuracy)}
        whole_scores.append([fscore, acc, rec])
    fscore, acc, rec = (float(v) for v in np.mean(np.array(whole_scores), axis=0))
    return {
        "accuracy": acc,
        "recall": rec,
        "fscore": fscore,
        "average": float(np.mean([acc, rec])),
        "level": level,
        "n": len(names),
        "per_wheel": per_wheel,
    }


def score_wheel_files(
    gold_csv: str | Path,
    pred_csv: str | Path,
    wheel_dir: str | Path,
    level: str = "level1",
    source: str = "mer2025",
    strict: bool = False,
) -> dict[str, Any]:
    """Read ``name,openset`` CSVs and the wheel folder, and score (see :func:`score_wheel`)."""
    parser = parse_list_strict if strict else parse_list_mer2025
    gold = parse_column(read_openset(gold_csv), parser, gold_csv)
    pred_cells = read_openset(pred_csv)
    check_names(gold, pred_cells, pred_csv)
    pred = parse_column({n: pred_cells[n] for n in gold}, parser, pred_csv)
    mapping = load_wheel_mapping(wheel_dir, source)
    result = score_wheel(gold, pred, mapping, level)
    result["source"] = mapping.source
    return result
