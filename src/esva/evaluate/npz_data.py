"""Read the plain data (dicts, lists, strings, numbers) out of a NumPy object array without
unpickling it.

An ``.npz`` whose arrays have ``dtype=object`` stores each array as a pickle, and
``np.load(allow_pickle=True)`` runs that pickle: a crafted file executes any command it likes
(``os.system`` is one ``GLOBAL`` + ``REDUCE`` away). MER2026's ``wheel_mapping.npz`` is such a
file, holding three dicts of lists of strings. This module reads it with a tiny interpreter of
the pickle *data* opcodes (:mod:`pickletools` decodes them; nothing is imported or called):

* containers and scalars (dict, list, tuple, str, int, float, bool, None) are built as usual;
* the only globals accepted are the three NumPy names an object array's pickle refers to
  (``_reconstruct``, ``ndarray``, ``dtype``); they are kept as inert markers, never imported,
  and the array's payload (the last item of its ``__setstate__`` tuple) is returned as is;
* any other global, any extension opcode or persistent id is refused with :class:`EsvaError`.

Only 0-d object arrays (``np.save(..., np.array(obj, dtype=object))``) are supported, which is
how dicts are stored in an npz.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esva.errors import EsvaError

# The globals an object ndarray's pickle refers to (numpy 1.x and 2.x module names).
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
# Refuse absurd files before reading them: the official one is 110 kB (0.6 MB unzipped).
MAX_MEMBER_BYTES = 64 << 20


@dataclass
class _Global:
    module: str
    name: str


@dataclass
class _Call:
    """``func(*args)`` recorded, never executed; ``state`` is what BUILD gave it."""

    func: _Global
    args: tuple
    state: Any = field(default=None)


class _Mark:
    pass


_MARK = _Mark()


def _interpret(data: bytes) -> Any:
    """Run the data opcodes of a pickle; refuse anything that would import or call code."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise ValueError("MARK missing")

    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise ValueError("stack not empty at STOP")
            return stack[0]
        if name == "MARK":
            stack.append(_MARK)
        elif name in (
            "BINUNICODE",
            "SHORT_BINUNICODE",
            "BINUNICODE8",
            "UNICODE",
            "BININT",
            "BININT1",
            "BININT2",
            "LONG1",
            "LONG4",
            "BINFLOAT",
            "SHORT_BINBYTES",
            "BINBYTES",
            "BINBYTES8",
            "SHORT_BINSTRING",
            "BINSTRING",
        ):
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name == "LIST":
            stack.append(pop_mark())
        elif name == "DICT":
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "APPEND":
            value = stack.pop()
            stack[-1].append(value)
        elif name == "APPENDS":
            items = pop_mark()
            stack[-1].extend(items)
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            stack[-1][key] = value
        elif name == "SETITEMS":
            items = pop_mark()
            stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[int(arg)])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
            else:
                attr = stack.pop()
                module = stack.pop()
            if (module, attr) not in _NUMPY_GLOBALS:
                raise PermissionError(f"refers to {module}.{attr}")
            stack.append(_Global(module, attr))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack.pop()
            if not isinstance(func, _Global) or not isinstance(args, tuple):
                raise ValueError("REDUCE on a non-global")
            stack.append(_Call(func, args))
        elif name == "BUILD":
            state = stack.pop()
            if not isinstance(stack[-1], _Call):
                raise ValueError("BUILD on plain data")
            stack[-1].state = state
        else:  # INST, OBJ, NEWOBJ, EXT*, PERSID, ...: code paths, never needed for plain data
            raise PermissionError(f"uses the pickle opcode {name}")
    raise ValueError("no STOP opcode")


def _object_payload(data: bytes) -> Any:
    """The Python object inside a 0-d object array's pickle (see module doc)."""
    array = _interpret(data)
    if not (
        isinstance(array, _Call)
        and array.func.name == "_reconstruct"
        and isinstance(array.state, tuple)
        and len(array.state) == 5
        and array.state[1] == ()
        and isinstance(array.state[4], list)
        and len(array.state[4]) == 1
    ):
        raise ValueError("not a 0-d object array")
    return array.state[4][0]


def load_npz_data(path: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{key: object}`` for the 0-d object arrays ``keys`` of the npz at ``path``, unpickled
    by :func:`_interpret` (no code runs). One-line :class:`EsvaError` for any other file."""
    path = Path(path)
    if not path.is_file():
        raise EsvaError("file not found", path)
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                member = f"{key}.npy"
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise EsvaError(f"lacks the array {key!r}", path) from None
                if info.file_size > MAX_MEMBER_BYTES:
                    raise EsvaError(f"array {key!r} is too large ({info.file_size} bytes)", path)
                handle = io.BytesIO(archive.read(member))
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                if dtype != np.dtype(object) or shape != ():
                    raise EsvaError(f"array {key!r} is not a 0-d object array", path)
                out[key] = _object_payload(handle.read())
    except EsvaError:
        raise
    except PermissionError as exc:
        raise EsvaError(
            f"holds code, not plain data ({exc}); refusing to load it (only plain dicts, lists "
            "and strings are read, nothing is executed)",
            path,
        ) from None
    except Exception as exc:  # zip, npy header and pickle format errors: not the expected file
        raise EsvaError(
            f"is not a readable npz of plain data ({type(exc).__name__})", path
        ) from None
    return out
