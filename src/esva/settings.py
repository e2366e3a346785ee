"""Settings files: YAML read safely, and config sections checked strictly in one place.

Every dataclass built from a user's file (run configs, model configs, encoder options) goes
through :func:`config_section`: unknown keys are refused by name, and a value of the wrong
type (read from the field's annotation: int, float, bool, str, None, list[...], dict[..., ...]
and unions of them) or outside its range (a class's ``LIMITS`` table) gives one line naming the
section and the key, never a traceback from deep inside the code that uses it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from esva.errors import EsvaError
from esva.io import read_text


def refuse_unknown(
    values: Mapping[str, Any],
    known: Iterable[str],
    source: str | Path | None,
    what: str = "keys",
    where: str = "",
) -> None:
    """One-line error naming the keys of ``values`` that are not in ``known``."""
    known = set(known)
    unknown = sorted(set(values) - known)
    if unknown:
        raise EsvaError(f"unknown {what} {unknown}{where} (known: {sorted(known)})", source)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a run config; a missing or malformed file is a one-line error."""
    try:
        return yaml.safe_load(read_text(path, "config file"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid YAML ({' '.join(str(exc).split())})", path) from None


@dataclass(frozen=True)
class Range:
    """Allowed numbers of a config field: ``Range(low=0, low_open=True)`` is "> 0"."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
SHARE = Range(0, 1)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}
    if annotation in names:
        return names[annotation]
    args = typing.get_args(annotation)
    if origin is list:
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or annotation is dict:
        return "a mapping"
    return str(annotation)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a parsed YAML value has the annotated type (a bool is not a number; NaN and
    infinities are not numbers either: no NaN may reach training or an output)."""
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if annotation is str:
        return isinstance(value, str)
    if origin is list or annotation is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value if args)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    return True  # a type this checker does not know: the dataclass itself decides


def check_fields(kind: type, values: Mapping[str, Any], what: str, source: str | Path | None):
    """One-line error for the first value of ``values`` whose type or range ``kind`` refuses.

    Types come from the dataclass annotations; ranges and choices from ``kind.LIMITS``
    (``{field: Range | tuple of allowed values}``), when the class has one.
    """
    hints = typing.get_type_hints(kind)
    limits = getattr(kind, "LIMITS", {})
    for key, value in values.items():
        annotation = hints.get(key, Any)
        if not _fits(value, annotation):
            raise EsvaError(
                f"{what}: {key} must be {_type_name(annotation)}, got {value!r}", source
            )
        limit = limits.get(key)
        if limit is None or value is None:
            continue
        if isinstance(limit, Range) and value not in limit:
            raise EsvaError(f"{what}: {key} must be {limit}, got {value!r}", source)
        if isinstance(limit, tuple) and value not in limit:
            raise EsvaError(f"{what}: {key} must be one of {list(limit)}, got {value!r}", source)


def config_from_dict(kind: type, data: Any, what: str, source: str | Path | None) -> Any:
    """Build dataclass ``kind`` from a saved or written config (a model's ``config.json``, a run
    config's model section), refusing what is not a mapping, unknown keys, values of the wrong
    type or range and the class's own complaints, each as one line naming ``what`` and the file.
    """
    if not isinstance(data, dict):
        raise EsvaError(f"{what} must be a mapping", source)
    refuse_unknown(data, (f.name for f in dataclasses.fields(kind)), source, f"{what} keys")
    check_fields(kind, data, what, source)
    try:
        return kind(**data)
    except EsvaError as exc:  # the class's own checks (__post_init__)
        raise EsvaError(str(exc), source) from None
    except TypeError as exc:
        raise EsvaError(f"bad {what} ({exc})", source) from None


def config_section(kind: type, values: Any, name: str, source: str | Path | None):
    """Build dataclass ``kind`` from a config section, refusing unknown keys, values of the
    wrong type and values out of range by name."""
    if not isinstance(values, dict):
        raise EsvaError(f"'{name}' section must be a mapping", source)
    refuse_unknown(
        values, (f.name for f in dataclasses.fields(kind)), source, where=f" in '{name}'"
    )
    check_fields(kind, values, f"'{name}' section", source)
    try:
        return kind(**values)
    except EsvaError as exc:  # the class's own checks (__post_init__)
        if exc.path is not None:
            raise
        raise EsvaError(f"'{name}' section: {exc}", source) from None
    except TypeError as exc:
        raise EsvaError(f"bad '{name}' section ({exc})", source) from None
