"""Settings files: YAML read safely, and config sections checked strictly in one place.

Every dataclass built from a user's file (run configs, model configs, encoder options) goes
through :func:`config_section`: unknown keys are refused by name, and a wrong type gives one
line naming the key, never a traceback from deep inside the code that uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from esva.errors import EsvaError


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
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EsvaError("config file not found", path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EsvaError(f"not valid YAML ({' '.join(str(exc).split())})", path) from None


def config_section(kind: type, values: Any, name: str, source: str | Path | None):
    """Build dataclass ``kind`` from a config section, refusing unknown keys by name."""
    if not isinstance(values, dict):
        raise EsvaError(f"'{name}' section must be a mapping", source)
    refuse_unknown(
        values, (f.name for f in dataclasses.fields(kind)), source, where=f" in '{name}'"
    )
    try:
        return kind(**values)
    except TypeError as exc:
        raise EsvaError(f"bad '{name}' section ({exc})", source) from None
