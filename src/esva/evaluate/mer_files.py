"""Read and validate MERTools-format label / prediction CSVs, and parse their list strings.

MERTools keeps labels in small CSVs with a ``name`` column:

- MER2023 discrete: ``name,discrete[,valence]`` (one class word per row, valence a float);
- MER2024 open vocabulary and MER2025 emotion wheel: ``name,openset`` where ``openset`` holds a
  list written as text, e.g. ``"['happy', 'relieved']"``.

Every problem a user can cause (missing file, wrong columns, unknown class, a gold name with no
prediction, a cell that is not a number) raises :class:`esva.errors.EsvaError` with one line that
names the file.

**List parsers.** MERTools does not ``eval`` the list strings; it splits them on quote characters.
The two official variants are reproduced here because the scores depend on them:

- :func:`parse_list_mer2024` (MERTools ``MER2024/toolkit/utils/functions.py::string_to_list``):
  keep the text between the first ``[`` and the next ``]``, split it on ``'`` and ``"``, drop pieces
  that are empty or a bare comma. Words are *not* stripped. A word that contains an apostrophe is
  cut in two: ``["don't care", 'sad']`` gives ``['don', 't care', 'sad']``.
- :func:`parse_list_mer2025` (``MER2025_Track23/toolkit/utils/functions.py::string_to_list``): drop
  one leading ``[`` and one trailing ``]``, split on ``'``, ``"`` *and* ``,``, strip each piece.
  It also reads plain comma lists (``"happy, sad"``), which the MER2025 wheel files use.
- :func:`parse_list_strict` reads the cell as a Python list literal (``ast.literal_eval``), which
  keeps ``"don't care"`` whole; it is not what the official scorers do, so scores can differ.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from esva.errors import EsvaError
from esva.labelsets import CLASS_SETS, MER2023_CLASSES
from esva.tables import parse_number, read_table

_QUOTES = re.compile("['\"]")
_QUOTES_OR_COMMA = re.compile("['\",]")
_BRACKETS = re.compile(r"[\[\]]")


def parse_classes(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Class list from a preset name (``mer2023``, ``ravdess``), a comma list, or a sequence."""
    if spec is None:
        return MER2023_CLASSES
    if isinstance(spec, str):
        if spec.strip().lower() in CLASS_SETS:
            return CLASS_SETS[spec.strip().lower()]
        spec = spec.split(",")
    classes = tuple(_norm_class(c) for c in spec if c.strip())
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise EsvaError(f"--classes needs at least two distinct class names, got {list(classes)}")
    return classes


def _norm_class(label: str) -> str:
    # MER labels are lower-case words; accept "Happy " from hand-made files.
    return label.strip().lower()


def read_discrete(
    path: str | Path, classes: Sequence[str] | None = None
) -> tuple[dict[str, str], dict[str, float] | None]:
    """Read ``name,discrete[,valence]``; return ``({name: class}, {name: valence} or None)``.

    Class names are compared case-insensitively; with ``classes`` given, an unknown class is an
    error that lists the offending names.
    """
    rows = read_table(path, ("name", "discrete"))
    labels = {name: _norm_class(row["discrete"]) for name, row in rows.items()}
    if classes is not None:
        known = set(classes)
        unknown = sorted({label for label in labels.values() if label not in known})
        if unknown:
            raise EsvaError(
                f"unknown class names {', '.join(repr(u) for u in unknown)} "
                f"(classes: {', '.join(classes)})",
                path,
            )
    valence = None
    if "valence" in next(iter(rows.values())):
        valence = {}
        for name, row in rows.items():
            valence[name] = parse_number(row["valence"].strip(), f"{name}: valence", path)
    return labels, valence


def read_openset(path: str | Path) -> dict[str, str]:
    """Read ``name,openset`` and return the raw list strings ``{name: text}``."""
    rows = read_table(path, ("name", "openset"))
    return {name: row["openset"] for name, row in rows.items()}


def check_names(
    gold_names: Iterable[str], pred_names: Iterable[str], pred_path: str | Path | None = None
) -> list[str]:
    """Return the gold names in order; fail naming those the predictions lack.

    Predictions may cover more names than the gold file: only gold names are scored.
    """
    gold = list(gold_names)
    have = set(pred_names)
    missing = [name for name in gold if name not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise EsvaError(f"no prediction for {len(missing)} gold name(s): {shown}", pred_path)
    return gold


# ----------------------------------------------------------------------------- list parsers
def parse_list_mer2024(text: str) -> list[str]:
    """MERTools MER2024 ``string_to_list``: split the bracketed text on quotes (see module doc)."""
    if text == "":
        return []
    if "[" not in text:
        raise ValueError(f"not a list like \"['happy', 'sad']\": {text!r}")
    inner = text.split("[")[1].split("]")[0]
    return [item for item in _QUOTES.split(inner) if item.strip() not in ("", ",")]


def parse_list_mer2025(text: str) -> list[str]:
    """MERTools MER2025 ``string_to_list``: split on quotes and commas, strip (see module doc)."""
    if text == "":
        return []
    if text[0] == "[":
        text = text[1:]
    if text[-1:] == "]":
        text = text[:-1]
    return [item.strip() for item in _QUOTES_OR_COMMA.split(text) if item.strip() not in ("", ",")]


def parse_list_strict(text: str) -> list[str]:
    """Read the cell as a Python list literal of strings (``ast.literal_eval``)."""
    if text.strip() == "":
        return []
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"not a Python list literal: {text!r}") from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of strings: {text!r}")
    return list(value)


def parse_groups_mer2024(text: str) -> list[list[str]]:
    """MERTools ``listlist_to_list``: ``"[['a', 'b'], ['c']]"`` -> ``[['a', 'b'], ['c']]``.

    Splits on brackets, then each piece on quotes, like :func:`parse_list_mer2024`.
    """
    pieces = [item for item in _BRACKETS.split(text) if item.strip() not in ("", ",")]
    return [[w for w in _QUOTES.split(piece) if w.strip() not in ("", ",")] for piece in pieces]


def parse_groups_strict(text: str) -> list[list[str]]:
    """Read ``"[['a', 'b'], ['c']]"`` as a Python literal (list of lists of strings)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"not a Python list literal: {text[:80]!r}") from None
    ok = isinstance(value, list | tuple) and all(
        isinstance(group, list | tuple) and all(isinstance(w, str) for w in group)
        for group in value
    )
    if not ok:
        raise ValueError(f"not a list of lists of strings: {text[:80]!r}")
    return [list(group) for group in value]


def parse_column(
    cells: Mapping[str, str], parser: Callable[[str], list[str]], path: str | Path | None = None
) -> dict[str, list[str]]:
    """Apply a list parser to every cell, turning a parse failure into an :class:`EsvaError`."""
    out: dict[str, list[str]] = {}
    for name, text in cells.items():
        try:
            out[name] = parser(text)
        except ValueError as exc:
            raise EsvaError(f"openset of {name}: {exc}", path) from None
    return out
