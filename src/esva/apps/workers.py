"""Worker processes that a crash in native code cannot take down with the caller.

Decoding and inference run libav, soxr, OpenCV and torch: C code that a hostile file can crash
(a SIGSEGV is not an exception, it ends the process). :class:`WorkerPool` runs them in spawned
processes (``concurrent.futures.ProcessPoolExecutor``; spawn, not fork: forking after torch and
OpenMP have started is unsafe). Each worker builds its object once, with the picklable
``factory`` it was given (the models load once per worker, not per task); a task is a method
call on that object. When a worker dies the task's caller gets :class:`WorkerCrashed`, the pool
is replaced by a fresh one (warmed in the background) and the next task runs as usual.

When the caller dies instead (kill -9, the OOM killer, a SIGTERM that skips ``finally``), its
workers end too: a worker holds both ends of the executor's task queue, so it never sees the
queue close and would otherwise wait for work forever, an orphan holding its models in memory
(and the resource tracker beside it). Each worker watches its parent's sentinel (a pipe that
closes when the parent ends) and exits when it fires.

Used by ``esva serve`` (every request) and batch ``esva predict`` (every file).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


class WorkerCrashed(Exception):
    """The worker process died while running a task (a native crash or a kill)."""


# ----------------------------------------------------------------------------- in the worker

_WORKER: dict[str, Any] = {}


def _init(factory: Callable[[], Any], threads: int | None) -> None:
    _exit_with_parent()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _WORKER["factory"] = factory


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (see the module doc)."""
    parent = mp.parent_process()
    if parent is None:  # not a spawned child (the initializer called in-process)
        return

    def watch() -> None:
        parent.join()  # waits on the parent's sentinel: returns once the parent has ended
        os._exit(1)  # no clean-up to run: the task, if any, has no one left to answer

    threading.Thread(target=watch, name="esva-parent-watch", daemon=True).start()


def _target() -> Any:
    if "object" not in _WORKER:
        _WORKER["object"] = _WORKER["factory"]()
    return _WORKER["object"]


def _call(method: str, args: tuple) -> Any:
    return getattr(_target(), method)(*args)


def _warm() -> None:
    _target()


# ----------------------------------------------------------------------------- in the caller


class WorkerPool:
    """``workers`` spawned processes, each holding ``factory()``; :meth:`call` runs a method."""

    def __init__(
        self, factory: Callable[[], Any], workers: int = 1, threads: int | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.factory, self.workers, self.threads = factory, workers, threads
        self.crashes = 0  # workers lost so far (each replaced)
        self._lock = threading.Lock()
        self._generation = 0
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init,
            initargs=(self.factory, self.threads),
        )

    def submit(self, method: str, *args: Any) -> tuple[Future, int]:
        """Start ``object.method(*args)`` in a worker: (its future, the pool's generation)."""
        with self._lock:
            executor, generation = self._executor, self._generation
        try:
            return executor.submit(_call, method, args), generation
        except BrokenProcessPool:  # a worker died between tasks (killed, out of memory)
            self.replace(generation)
            with self._lock:
                return self._executor.submit(_call, method, args), self._generation

    def result(self, future: Future, generation: int) -> Any:
        """The task's result; :class:`WorkerCrashed` (the pool replaced) if its worker died."""
        try:
            return future.result()
        except BrokenProcessPool:
            self.replace(generation)
            raise WorkerCrashed(
                "the worker process died while handling this task (a crash in native code)"
            ) from None

    def call(self, method: str, *args: Any) -> Any:
        """``object.method(*args)`` in a worker, blocking; see :meth:`result`."""
        return self.result(*self.submit(method, *args))

    def replace(self, generation: int) -> None:
        """Replace a broken pool once (however many of its tasks report the crash)."""
        with self._lock:
            if generation != self._generation:
                return  # another caller has replaced it already
            broken = self._executor
            self._generation += 1
            self.crashes += 1
            self._executor = self._start()
            # The models load in the background: the next task waits less.
            self._executor.submit(_warm)
        with contextlib.suppress(Exception):
            broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers and wait for them to exit (queued tasks are cancelled)."""
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
