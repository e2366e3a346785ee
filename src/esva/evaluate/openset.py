"""MER2024 open-vocabulary (OV) scorer, reproducing MERTools' ``main-ov.py``.

Each sample has a gold list of emotion words and a predicted list. MERTools first asks GPT to
group the union of both lists into synonym groups and caches the answer per sample
(``openset-synonym/<name>.npy``, a string like ``"[['joyful', 'happy'], ['sad']]"``). Scoring
(``calculate_openset_overlap_rate_mer2024``) is then deterministic:

1. parse both lists with the quote-splitting parser
   (:func:`~esva.evaluate.mer_files.parse_list_mer2024`) and lower-case every word;
2. map each word to the first word of its synonym group (a word in several groups takes the
   last group's, as MERTools' dict update does; words in no group map to themselves; the group
   words themselves are *not* lower-cased, as in MERTools);
3. per sample, with G and P the mapped *sets*: accuracy = |G∩P| / |P| and recall = |G∩P| / |G|
   (both 0 when P is empty);
4. average each over samples (``np.mean``), and report their mean as ``average``.

On MERTools' reference store this gives accuracy 0.581777108433735, recall 0.4977911646586345,
average 0.5397841365461847. Differences from MERTools, all on inputs where it crashes or is
ambiguous: samples whose gold list is empty are skipped (MERTools divides by zero); samples are
the gold file's names (MERTools iterates the synonym files, so a gold name without one is silently
dropped there, and an error here).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esva.errors import EsvaError
from esva.evaluate.mer_files import (
    check_names,
    parse_column,
    parse_groups_mer2024,
    parse_groups_strict,
    parse_list_mer2024,
    parse_list_strict,
    read_openset,
)


def synonym_map(groups: Sequence[Sequence[str]]) -> dict[str, str]:
    """``word -> first word of its group``; a later group overrides an earlier one (as MERTools)."""
    mapping: dict[str, str] = {}
    for group in groups:
        for word in group:
            mapping[word] = group[0]
    return mapping


def overlap_scores(gold: set[str], pred: set[str]) -> tuple[float, float]:
    """Per-sample (accuracy, recall) = (|G∩P|/|P|, |G∩P|/|G|); (0, 0) when P is empty."""
    if not pred:
        return 0.0, 0.0
    hit = len(gold & pred)
    return hit / len(pred), hit / len(gold)


def score_openset(
    gold: Mapping[str, Sequence[str]],
    pred: Mapping[str, Sequence[str]],
    synonyms: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> dict[str, Any]:
    """Score parsed word lists ``{name: [word, ...]}`` the MER2024 way (see module doc).

    ``synonyms`` maps each name to its synonym groups; without it words are compared as they
    are (after lower-casing). Returns ``accuracy, recall, average, n`` (samples scored) and
    ``n_skipped`` (samples with an empty gold list).
    """
    names = check_names(gold, pred)
    if synonyms is not None:
        missing = [name for name in names if name not in synonyms]
        if missing:
            raise EsvaError(f"no synonym groups for {len(missing)} gold name(s), e.g. {missing[0]}")
    accuracy, recall, skipped = [], [], 0
    for name in names:
        mapping = synonym_map(synonyms[name]) if synonyms is not None else {}
        g = {mapping.get(w, w) for w in (word.lower() for word in gold[name])}
        p = {mapping.get(w, w) for w in (word.lower() for word in pred[name])}
        if not g:
            skipped += 1
            continue
        a, r = overlap_scores(g, p)
        accuracy.append(a)
        recall.append(r)
    if not accuracy:
        raise EsvaError("every gold word list is empty: nothing to score")
    # np.mean (pairwise summation) as in MERTools, so the last digits agree too.
    acc, rec = float(np.mean(accuracy)), float(np.mean(recall))
    return {
        "accuracy": acc,
        "recall": rec,
        "average": float(np.mean([acc, rec])),
        "n": len(accuracy),
        "n_skipped": skipped,
    }


def load_synonym_zip(
    path: str | Path, parser: Callable[[str], list[list[str]]] = parse_groups_mer2024
) -> dict[str, list[list[str]]]:
    """Read MERTools' ``openset-synonym.zip``: one ``<name>.npy`` (a string) per sample."""
    path = Path(path)
    if not path.exists():
        raise EsvaError("file not found", path)
    groups: dict[str, list[list[str]]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                stem = member.rsplit("/", 1)[-1]
                if not stem.endswith(".npy") or member.startswith("__MACOSX/"):
                    continue
                name = stem[: -len(".npy")]
                try:
                    # allow_pickle=False: the cache holds a plain string array, never objects.
                    value = np.load(io.BytesIO(archive.read(member)), allow_pickle=False).tolist()
                except (ValueError, OSError, EOFError) as exc:
                    raise EsvaError(
                        f"member {member} is not a readable .npy ({exc})", path
                    ) from None
                if not isinstance(value, str):
                    raise EsvaError(f"member {member} does not hold a string", path)
                try:
                    groups[name] = parser(value)
                except ValueError as exc:
                    raise EsvaError(f"member {member}: {exc}", path) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise EsvaError(f"is not a valid zip file ({exc})", path) from None
    except IsADirectoryError:
        raise EsvaError("is a directory, expected a .zip file", path) from None
    if not groups:
        raise EsvaError("holds no <name>.npy synonym files", path)
    return groups


def score_openset_files(
    gold_csv: str | Path,
    pred_csv: str | Path,
    synonyms_zip: str | Path | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Read ``name,openset`` CSVs (and the synonym zip) and score them.

    ``strict=False`` parses lists by splitting on quotes exactly as MERTools does; ``strict=True``
    reads them as Python literals (an apostrophe inside a word is then kept).
    """
    list_parser = parse_list_strict if strict else parse_list_mer2024
    gold = parse_column(read_openset(gold_csv), list_parser, gold_csv)
    pred_cells = read_openset(pred_csv)
    check_names(gold, pred_cells, pred_csv)
    pred = parse_column({n: pred_cells[n] for n in gold}, list_parser, pred_csv)
    synonyms = None
    if synonyms_zip is not None:
        synonyms = load_synonym_zip(
            synonyms_zip, parse_groups_strict if strict else parse_groups_mer2024
        )
        missing = [name for name in gold if name not in synonyms]
        if missing:
            raise EsvaError(
                f"no synonym file for {len(missing)} gold name(s), e.g. {missing[0]}.npy",
                synonyms_zip,
            )
    return score_openset(gold, pred, synonyms)
