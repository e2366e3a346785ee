"""``esva predict`` over many files: models loaded once, a CSV in MERTools' format, resumable.

Inputs are files, folders (searched recursively for audio and video) or glob patterns; each
file's row is named by its stem, so two inputs with the same stem are refused before any work.

The CSV (``--out``) starts with MERTools' ``name,discrete`` (``esva score mer2023 --pred`` reads
it as it is), then one probability column per class, ``modalities`` (``+``-joined), ``offset_ms``
(empty when undefined: no NaN is ever written) and ``error`` (the one-line reason a file failed;
its other cells are then empty). The CSV is written once, atomically, at the end.

Resuming. Every finished row is appended to a side file next to the CSV
(``.<out name>.part<rank>.jsonl``) and flushed to disk at once, so a run killed at any moment
(``kill -9`` included) loses no finished file. A rerun with the same ``--out`` reads the side
files, skips the files already predicted (same path, same model) and retries the failed ones; a
half-written last line (the kill landed mid-write) is ignored. The side files are removed once
the CSV is complete.

Isolation and parallelism. Files are predicted in ``workers`` spawned processes (one by
default), each with its own :class:`~esva.apps.inference.Recognizer` (loaded once) and, when
there are several, one torch thread: a file that crashes native code (libav, soxr, torch) kills
only its worker, which is replaced, and the file is one failed row, not a dead run. Under
``torchrun`` / ``accelerate launch`` rank ``r`` takes ``paths[r::world]`` (as ``esva extract``
does), writes its own side file, and rank 0 merges them into the CSV. Rows are always in input
order.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esva.apps.adapt import Adaptation, adapt_rows, adaptation_inputs, voice_model_of
from esva.data.sources import MEDIA_SUFFIXES
from esva.errors import EsvaError
from esva.io import atomic_write
from esva.runs import ProgressBar, distributed

_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------- inputs


def _scan(root: Path) -> list[Path]:
    from esva.data.datasets.base import scan_media

    return scan_media(root, MEDIA_SUFFIXES)


def collect_inputs(specs: Iterable[str | Path]) -> list[Path]:
    """The media files named by ``specs`` (files, folders searched recursively, globs), in the
    order given (a folder's or a glob's files sorted), each once."""
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_dir():
            files = _scan(path)
            if not files:
                raise EsvaError("no audio or video files in the folder", path)
        elif path.exists():
            files = [path]
        elif _GLOB_CHARS & set(text):
            files = []
            for match in sorted(glob.glob(text, recursive=True)):
                m = Path(match)
                if m.is_dir():
                    files.extend(_scan(m))
                elif m.suffix.lower() in MEDIA_SUFFIXES:
                    files.append(m)
            if not files:
                raise EsvaError(f"no audio or video files match {text!r}")
        else:
            raise EsvaError("file not found", path)
        found.extend(files)
    seen: set[str] = set()
    unique = []
    for f in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def check_stems(paths: list[Path]) -> None:
    """Rows are named by file stem (MERTools' ``name``): two files with one stem would clash."""
    first: dict[str, Path] = {}
    for p in paths:
        if p.stem in first:
            raise EsvaError(
                f"two inputs share the name {p.stem!r} ({first[p.stem]} and {p}); the CSV's "
                "'name' column is the file stem: rename one or predict them separately"
            )
        first[p.stem] = p


# ----------------------------------------------------------------------------- rows


def prediction_row(pred: Any, classes: list[str], adapt: bool = False) -> dict[str, Any]:
    """One CSV row (as a dict) from a :class:`~esva.apps.inference.Prediction`; with ``adapt``
    also what batch adaptation reads (:func:`esva.apps.adapt.adaptation_inputs`)."""
    probs = [pred.probabilities.get(c) for c in classes]
    if any(p is None or not math.isfinite(p) for p in probs):
        raise EsvaError("the model returned a non-finite probability")
    offset = pred.offset_ms
    per_modality = getattr(pred, "per_modality", None) or {}
    return {
        "discrete": pred.label,
        "probabilities": [float(p) for p in probs],
        "modalities": "+".join(pred.modalities),
        "offset_ms": None if offset is None or not math.isfinite(offset) else float(offset),
        "confident": bool(getattr(pred, "confident", True)),
        "error": "",
        # a fused model's per-expert labels (the CSV's <expert>_label columns)
        "experts": {name: m["label"] for name, m in per_modality.items()},
        "adapted": False,
        # what batch adaptation reads (esva.apps.adapt); not in the CSV
        **(adaptation_inputs(pred) if adapt else {}),
    }


def error_row(message: str) -> dict[str, Any]:
    line = " ".join(str(message).split()) or "failed"
    return {"discrete": "", "probabilities": None, "modalities": "", "offset_ms": None,
            "error": line}  # fmt: skip


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, EsvaError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- workers


class BatchWorker:
    """What each worker process holds: the recogniser, loaded once (see :mod:`esva.apps.workers`:
    a file that crashes native code kills only its worker, and becomes one failed row)."""

    def __init__(self, model_dir: str | None, assume_default: bool, adapt: bool = False) -> None:
        from esva.apps.inference import Recognizer

        self.recognizer = Recognizer.from_pretrained(
            model_dir, assume_default_extraction=assume_default
        )
        self.adapt = adapt

    def row(self, path: str) -> tuple[str, dict[str, Any]]:
        return predict_row(self.recognizer, path, self.adapt)


def crashed_row(path: str) -> dict[str, Any]:
    return error_row(
        f"{path}: the worker process died on this file (a crash in native code while decoding "
        "or predicting it); skipped"
    )


def predict_row(recognizer: Any, path: str, adapt: bool = False) -> tuple[str, dict[str, Any]]:
    """``(path, row)``: the file's CSV row, or an error row with its one-line reason."""
    try:
        pred = recognizer.predict(path)
        row = prediction_row(pred, _classes_of(recognizer), adapt)
    except Exception as exc:  # a bad file is reported in its row; the batch goes on
        row = error_row(_one_line(exc))
    return path, row


# ----------------------------------------------------------------------------- side files


def _side_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.part*.jsonl"))


def _side_file(out: Path, rank: int) -> Path:
    return out.parent / f".{out.name}.part{rank}.jsonl"


def read_done(out: Path, model: str, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Rows already finished by an earlier run with this ``out``: ``{resolved path: row}``.

    Only rows from the same model and class list count; a torn last line is skipped.
    """
    done: dict[str, dict[str, Any]] = {}
    for side in _side_files(out):
        try:
            text = side.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that file is simply predicted again
            if rec.get("model") == model and rec.get("classes") == classes:
                done[rec["path"]] = rec["row"]
    return done


class _SideWriter:
    """Append-only JSON lines, each flushed and fsynced as soon as its file is done."""

    def __init__(self, path: Path, model: str, classes: list[str]) -> None:
        self.path, self.model, self.classes = path, model, classes
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        # A torn line from a killed run: start ours on a fresh line.
        if self.handle.tell() > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self.handle.write("\n")

    def add(self, path: str, row: dict[str, Any]) -> None:
        rec = {"path": path, "model": self.model, "classes": self.classes, "row": row}
        self.handle.write(json.dumps(rec) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------- CSV


def csv_header(classes: list[str], experts: Sequence[str] = ()) -> list[str]:
    """MERTools' name,discrete, one column per class, then ours (``confident``: yes / no by the
    model's calibrated rule, empty on an error row); a fused model (its experts given) adds
    each expert's own label (``voice_label``, ``face_label``) at the end."""
    tail = [f"{e}_label" for e in experts]
    return ["name", "discrete", *classes, "modalities", "offset_ms", "confident", "error", *tail,
            "adapted"]  # fmt: skip


def write_csv(
    out: Path,
    paths: list[Path],
    rows: dict[str, dict],
    classes: list[str],
    experts: Sequence[str] = (),
) -> None:
    """The predictions CSV in input order, atomically (temp + rename)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(classes, experts))
    for p in paths:
        row = rows[row_key(p)]
        probs = row["probabilities"] or [None] * len(classes)
        writer.writerow(
            [
                p.stem,
                row["discrete"],
                *("" if v is None else f"{v:.6f}" for v in probs),
                row["modalities"],
                "" if row["offset_ms"] is None else f"{row['offset_ms']:.1f}",
                {True: "yes", False: "no"}.get(row.get("confident"), ""),
                row["error"],
                *((row.get("experts") or {}).get(e, "") for e in experts),
                "" if row["error"] else {True: "yes"}.get(row.get("adapted"), "no"),
            ]
        )
    with atomic_write(out) as handle:
        handle.write(buf.getvalue())


def row_key(path: Path) -> str:
    return os.path.realpath(path)


# ----------------------------------------------------------------------------- driver


@dataclass
class BatchSummary:
    total: int = 0
    done: int = 0  # predicted in this run
    resumed: int = 0  # taken from an earlier run's side file
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # resolved path -> row
    classes: list[str] = field(default_factory=list)
    written: Path | None = None  # the CSV, when this process wrote it (rank 0)
    adaptation: Adaptation | None = None  # what batch adaptation did (None: not asked)


def _classes_of(recognizer: Any) -> list[str]:
    """The answers' classes (a fused recognizer's output space; else the model's)."""
    classes = getattr(recognizer, "classes", None)
    return list(classes) if classes is not None else list(recognizer.model.config.classes)


def _experts_of(recognizer: Any) -> list[str]:
    fusion = getattr(recognizer, "fusion", None)
    return list(fusion.experts) if fusion is not None else []


def _model_identity(model_dir: str | Path | None) -> tuple[str, list[str], list[str]]:
    """The model's name (as Recognizer names it), its answers' classes and its fused experts
    (from fusion.json when the folder has one; else the model's classes, no experts), without
    loading weights."""
    from esva.fusion.spec import load_fusion
    from esva.io import read_json

    if model_dir is None:
        from esva.assets import default_model_dir

        directory = default_model_dir(verify=False)
        fusion = load_fusion(directory)
        name = "default (esva/assets/default_model)"
        if fusion is not None:
            return name, list(fusion.classes), list(fusion.experts)
        return name, list(read_json(directory / "config.json")["classes"]), []
    fusion = load_fusion(model_dir)
    if fusion is not None:
        return str(model_dir), list(fusion.classes), list(fusion.experts)
    config = read_json(Path(model_dir) / "config.json")
    if not isinstance(config, dict) or not isinstance(config.get("classes"), list):
        raise EsvaError("config.json has no class list", model_dir)
    return str(model_dir), [str(c) for c in config["classes"]], []


def run_batch(
    paths: list[Path],
    model_dir: str | Path | None = None,
    out: str | Path | None = None,
    workers: int = 1,
    assume_default_extraction: bool = False,
    on_result: Callable[[str, dict], None] | None = None,
    progress: bool = True,
    recognizer: Any = None,
    adapt: bool = False,
) -> BatchSummary:
    """Predict every file in ``paths``; write ``out`` (if given) on rank 0; see the module doc.

    ``recognizer``: an already loaded :class:`~esva.apps.inference.Recognizer` to use in this
    process (``workers`` must then be 1); its name and classes identify the rows.
    ``adapt``: adapt the voice to the batch when it is large enough (:mod:`esva.apps.adapt`;
    with several ranks, over the merged rows when the CSV is written).
    """
    if not paths:
        raise EsvaError("no files to predict")
    if workers < 1:
        raise EsvaError(f"--workers must be at least 1, got {workers}")
    check_stems(paths)
    out = Path(out) if out is not None else None
    if recognizer is not None:
        if workers != 1:
            raise EsvaError("a loaded recognizer runs in this process: workers must be 1")
        model_name, classes = recognizer.name, _classes_of(recognizer)
        experts = _experts_of(recognizer)
    else:
        model_name, classes, experts = _model_identity(model_dir)
    rank, world, state = distributed()
    shard = paths[rank::world]
    done = read_done(out, model_name, classes) if out is not None else {}
    summary = BatchSummary(total=len(paths), classes=classes)
    todo = []
    for p in shard:
        row = done.get(row_key(p))
        if row is not None and not row["error"]:
            summary.rows[row_key(p)] = row
            summary.resumed += 1
        else:
            todo.append(str(p))
    side = None
    if out is not None:
        try:
            side = _SideWriter(_side_file(out, rank), model_name, classes)
        except OSError as exc:  # checked before by check_output_file; a race or a full disk
            raise EsvaError(
                f"cannot write beside --out ({exc.strerror or type(exc).__name__})", out
            ) from None
    title = f"predict (rank {rank}/{world})" if world > 1 else "predict"
    # on stderr: stdout carries the results
    bar = ProgressBar(progress and rank == 0 and bool(todo), len(todo), title, stderr=True)
    try:
        if recognizer is not None:
            results = (predict_row(recognizer, p, adapt) for p in todo)
        else:
            results = _results(todo, model_dir, workers, assume_default_extraction, adapt)
        for path, row in results:
            if side is not None:
                side.add(row_key(Path(path)), row)
            summary.rows[row_key(Path(path))] = row
            summary.done += 1
            if on_result is not None:
                on_result(path, row)
            bar.advance()
    finally:
        bar.close()
        if side is not None:
            side.close()
    if state is not None:
        state.wait_for_everyone()
    if out is not None and rank == 0:
        rows = read_done(out, model_name, classes)  # every rank's part (and earlier runs')
        rows.update(summary.rows)
        missing = [p for p in paths if row_key(p) not in rows]
        if missing:
            raise EsvaError(f"{len(missing)} file(s) have no row after the run (e.g. {missing[0]})")
        summary.rows = rows
        if adapt:
            summary.adaptation = _adapt(rows, model_dir, recognizer)
        write_csv(out, paths, rows, classes, experts)
        summary.written = out
        for f in _side_files(out):
            f.unlink(missing_ok=True)
    if adapt and out is None and world == 1:
        summary.adaptation = _adapt(summary.rows, model_dir, recognizer)
    order = paths if rank == 0 and out is not None else shard
    summary.total = len(order)  # a rank without the merged CSV reports its own shard
    summary.failed = [
        (str(p), summary.rows[row_key(p)]["error"])
        for p in order
        if row_key(p) in summary.rows and summary.rows[row_key(p)]["error"]
    ]
    return summary


def _adapt(rows: dict[str, dict], model_dir: str | Path | None, recognizer: Any) -> Adaptation:
    if recognizer is not None:
        return adapt_rows(rows, recognizer.model, recognizer.fusion)
    return adapt_rows(rows, *voice_model_of(model_dir))


def _results(
    todo: list[str],
    model_dir: str | Path | None,
    workers: int,
    assume_default: bool,
    adapt: bool = False,
) -> Iterator[tuple[str, dict]]:
    """Rows from spawned worker processes (even one: a crash must not end the run)."""
    if not todo:
        return
    import torch

    from esva.apps.workers import WorkerPool

    model = None if model_dir is None else str(model_dir)
    workers = min(workers, len(todo))
    # One worker may use this process's threads; several share the cores, one thread each.
    threads = torch.get_num_threads() if workers == 1 else 1
    factory = functools.partial(BatchWorker, model, assume_default, adapt)
    with WorkerPool(factory, workers, threads) as pool:
        yield from _isolated_rows(pool, todo, workers)


def _isolated_rows(pool: Any, todo: list[str], width: int) -> Iterator[tuple[str, dict]]:
    """At most ``width`` files in flight, rows as they finish. A worker that dies breaks every
    file then in flight: with one in flight it is the culprit (a failed row); with several,
    each is run again alone, so that only the file that crashes again fails."""
    from esva.apps.workers import WorkerCrashed

    pending = deque(todo)
    running: dict[Future, tuple[str, int]] = {}
    suspects: deque[str] = deque()
    while pending or running or suspects:
        if suspects and not running:
            path = suspects.popleft()
            try:
                yield pool.call("row", path)
            except WorkerCrashed:
                yield path, crashed_row(path)
            continue
        while pending and not suspects and len(running) < width:
            path = pending.popleft()
            future, generation = pool.submit("row", path)
            running[future] = (path, generation)
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            path, generation = running.pop(future)
            try:
                yield pool.result(future, generation)
            except WorkerCrashed:
                if width == 1:
                    yield path, crashed_row(path)
                else:
                    suspects.append(path)
