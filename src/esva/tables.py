"""CSV tables with a ``name`` column (MERTools' label and prediction files, corpus lists)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from esva.errors import EsvaError


def read_rows(
    path: str | Path,
    required: Sequence[str] = (),
    *,
    what: str = "CSV file",
    expected: str | None = None,
    allow_empty: bool = False,
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV with a header line, every row a ``{column: text}`` dict (a short
    row's missing cells are ""), for tables keyed by something other than ``name``.
    ``delimiter`` and ``quoting`` as :mod:`csv`'s (a TSV: a tab, ``csv.QUOTE_NONE``).

    The one reader for esva's CSV inputs: a UTF-8 BOM is tolerated, header names are stripped,
    and every problem is one :class:`EsvaError` line naming the file and ``what`` it should be
    (``"labels file not found"``, ``"... has no rows"``, ``"expected columns EXPECTED, found
    ..."``; ``expected`` defaults to ``required`` joined by commas).
    """
    path = Path(path)
    if not path.exists():
        raise EsvaError(f"{what} not found", path)
    if path.is_dir():
        raise EsvaError(f"is a directory, expected a {what}", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise EsvaError(f"{what} is not UTF-8 text", path) from None
    except OSError as exc:
        raise EsvaError(f"{what} cannot be read ({exc.strerror})", path) from None
    try:
        reader = csv.DictReader(
            io.StringIO(text, newline=""), restval="", delimiter=delimiter, quoting=quoting
        )
        header = [column.strip() for column in reader.fieldnames or []]
        if any(column not in header for column in required):
            raise EsvaError(
                f"expected columns {expected or ','.join(required)}, "
                f"found {','.join(header) or 'none'}",
                path,
            )
        reader.fieldnames = header
        rows = [
            {k: "" if v is None else v for k, v in row.items() if k is not None} for row in reader
        ]
    except csv.Error as exc:
        raise EsvaError(f"malformed CSV ({exc})", path) from None
    if not rows and not allow_empty:
        raise EsvaError(f"{what} has no rows", path)
    return header, rows


def read_table(path: str | Path, required: Sequence[str]) -> dict[str, dict[str, str]]:
    """Read a CSV with a header into ``{name: row}``, rows in file order.

    ``required`` lists the columns that must be present (``name`` first); extra columns are
    kept. Blank lines are skipped; a duplicate or empty ``name`` is an error.
    """
    path = Path(path)
    if not path.exists():
        raise EsvaError("file not found", path)
    if path.is_dir():
        raise EsvaError("is a directory, expected a CSV file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate the BOM spreadsheets write
    except UnicodeDecodeError:
        raise EsvaError("is not UTF-8 text (expected a CSV file)", path) from None
    except OSError as exc:
        raise EsvaError(f"cannot be read ({exc.strerror})", path) from None
    if not text.strip():
        raise EsvaError(f"file is empty (expected a header line {','.join(required)})", path)

    rows: dict[str, dict[str, str]] = {}
    try:
        reader = csv.reader(io.StringIO(text))
        header = [column.strip() for column in next(reader)]
        check_columns(header, required, path)
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise EsvaError(
                    f"line {reader.line_num} has {len(fields)} fields but the header has "
                    f"{len(header)}",
                    path,
                )
            row = dict(zip(header, fields, strict=True))
            name = row["name"].strip()
            if not name:
                raise EsvaError(f"line {reader.line_num} has an empty name", path)
            if name in rows:
                raise EsvaError(f"duplicate name {name!r} (line {reader.line_num})", path)
            rows[name] = row
    except csv.Error as exc:
        raise EsvaError(f"is not a valid CSV file ({exc})", path) from None
    if not rows:
        raise EsvaError("has a header but no rows", path)
    return rows


def check_columns(
    header: Sequence[str], required: Sequence[str], path: Path, kind: str = "CSV"
) -> None:
    """One EsvaError line, ``wrong <kind> columns: expected ..., found ... (missing ...)``, when
    the header lacks a required column."""
    missing = [column for column in required if column not in header]
    if missing:
        raise EsvaError(
            f"wrong {kind} columns: expected {','.join(required)}, "
            f"found {','.join(header) or 'none'} (missing {', '.join(missing)})",
            path,
        )


def parse_number(text: str, what: str, path: str | Path) -> float:
    """A cell as a finite float; one EsvaError line naming ``what`` (``"line 3: valence"``) and
    the text otherwise (a NaN or an infinity would poison every mean computed from it)."""
    try:
        value = float(text)
    except ValueError:
        raise EsvaError(f"{what} {text!r} is not a number", path) from None
    if not math.isfinite(value):
        raise EsvaError(f"{what} {text!r} is not a finite number", path)
    return value
