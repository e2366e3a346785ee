"""Run the extraction over many clips: resumable, parallel, and sharded across ranks.

* Clips already in the store (manifest entry + matching file hashes) are skipped.
* ``workers > 1`` runs clips in that many processes (one torch thread each; on a 2-core laptop
  ``workers=2`` uses both cores).
* One run per store at a time: the run holds an ``fcntl.flock`` on ``OUT/.esva-extract.lock``;
  a second run into the same store waits a few seconds, then stops with a one-line error.
* Under ``accelerate launch`` / ``torchrun`` every rank takes its shard of the clip list
  (``clips[rank::world]``) and writes into the same store; rank 0 writes the manifest at the end.
  This is how a large corpus is spread over a cluster with the same engine as training.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from esva.data.sources import ClipSource
from esva.errors import EsvaError
from esva.extract.feature_store import FeatureStore
from esva.extract.pipeline import ExtractConfig, FeatureExtractor
from esva.io import remove_stale_temps
from esva.runs import ProgressBar, distributed


@dataclass
class ExtractSummary:
    done: int = 0
    skipped: int = 0
    degraded: dict[str, int] = field(default_factory=dict)  # flag -> clips
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    seconds: float = 0.0
    store: dict[str, int] = field(default_factory=dict)  # status counts over the whole store

    def to_dict(self) -> dict:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "degraded": self.degraded,
            "failed": [{"clip": c, "reason": r} for c, r in self.failed],
            "seconds": self.seconds,
            "store": self.store,
        }


# --- worker side ----------------------------------------------------------------------------------
_WORKER: tuple[FeatureExtractor, FeatureStore, list[str]] | None = None


def _init_worker(config: ExtractConfig, out: str, threads: int) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(threads)
    extractor = FeatureExtractor(config)
    _WORKER = (extractor, FeatureStore(out), config.encoders)


def _process(source: ClipSource) -> tuple[str, str, list[str], str]:
    """Extract one clip into the store; returns (clip, status, flags, reason)."""
    extractor, store, encoders = _WORKER
    try:
        features = extractor.extract(source)
    except (EsvaError, OSError, MemoryError) as exc:
        # A problem of this clip (unreadable, too large, a name the file system refuses) goes
        # into its failure record; the run goes on with the next clip.
        reason = str(exc) if isinstance(exc, EsvaError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())
        store.write_failed(source, encoders, reason)
        return source.name, "failed", [], reason
    entry = store.write_clip(source, features, encoders)
    return source.name, entry["status"], entry["flags"], ""


# --- the store lock --------------------------------------------------------------------------
LOCK_FILE = ".esva-extract.lock"
LOCK_WAIT_S = 5.0  # a second run waits this long for the first, then gives up (exit 2)


@contextlib.contextmanager
def store_lock(out: str | Path, wait_s: float | None = None) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``OUT/.esva-extract.lock`` for the whole run.

    The kernel drops the lock when the process dies (even by kill -9), so a stale lock file
    never blocks the next run; the empty file itself stays in the store.
    """
    import fcntl

    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the with-block
    except OSError as exc:
        raise EsvaError(f"cannot create the feature store ({exc.strerror})", root) from None
    try:
        deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EsvaError(
                        f"another esva extract is writing this store (it holds {LOCK_FILE}); "
                        "wait for it to finish or use another --out",
                        root,
                    ) from None
                time.sleep(0.2)
        yield root / LOCK_FILE
    finally:
        handle.close()  # releases the lock


# --- driver ---------------------------------------------------------------------------------
def run_extract(
    sources: list[ClipSource],
    out: str | Path,
    config: ExtractConfig,
    workers: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    if not sources:
        raise EsvaError("no clips to extract")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise EsvaError(f"clip names must be unique; repeated: {dup}")
    started = time.perf_counter()
    rank, world, state = distributed()
    # One run per store at a time: two runs would both redo every clip, and with different
    # settings both would "succeed" while only one run's features survive. Under
    # accelerate/torchrun the ranks share one run, so only rank 0 holds the lock.
    with store_lock(out) if rank == 0 else contextlib.nullcontext():
        store = FeatureStore(out)
        store.check_settings(config)
        if rank == 0:  # orphans of a run killed mid-write (kill -9 runs no cleanup)
            root = Path(out)
            for folder in (root, *(p for p in root.iterdir() if p.is_dir())):
                remove_stale_temps(folder)
        shard = sources[rank::world]
        todo = [s for s in shard if not store.is_done(s.name, config.encoders, retry_failed)]
        summary = ExtractSummary(skipped=len(shard) - len(todo))
        if todo:
            workers = max(1, min(workers, len(todo)))
            bar = ProgressBar(
                progress and rank == 0,
                len(todo),
                f"extract (rank {rank}/{world})" if world > 1 else "extract",
            )
            try:
                if workers == 1:
                    threads = max(1, (os.cpu_count() or 1) // world)
                    _init_worker(config, str(out), threads=threads)
                    for result in map(_process, todo):
                        _account(summary, result, bar)
                else:
                    ctx = mp.get_context("spawn")  # fork after torch/OpenMP init is unsafe
                    with ctx.Pool(workers, _init_worker, (config, str(out), 1)) as pool:
                        for result in pool.imap_unordered(_process, todo):
                            _account(summary, result, bar)
            finally:
                bar.close()
        if state is not None:
            state.wait_for_everyone()
        if rank == 0:
            summary.store = store.finalize(sources, config)
    summary.seconds = time.perf_counter() - started
    return summary


def _account(
    summary: ExtractSummary, result: tuple[str, str, list[str], str], bar: ProgressBar
) -> None:
    clip, status, flags, reason = result
    if status == "failed":
        summary.failed.append((clip, reason))
    else:
        summary.done += 1
        for flag in flags:
            summary.degraded[flag] = summary.degraded.get(flag, 0) + 1
    bar.advance()
