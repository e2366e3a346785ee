"""Worker processes (``esva.apps.workers``) never outlive what started them.

A spawned ``ProcessPoolExecutor`` worker holds both ends of its task queue, so when its parent
is killed it waits for work forever, an orphan holding its models in memory. These tests fail
when a worker is left behind: after a kill -9 of the parent, after a served app stops, after a
batch run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# A parent that starts one worker, prints its pid and waits to be killed.
_PARENT = """
import time
from crash_service import CrashService
from esva.apps.workers import WorkerPool

pool = WorkerPool(CrashService)
assert pool.call("describe")["name"] == "crash-test"
print(*pool._executor._processes, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_workers_exit_when_their_parent_is_killed() -> None:
    path = os.pathsep.join(filter(None, (str(TESTS), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], env=env, stdout=subprocess.PIPE, text=True
    )
    workers: list[int] = []
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers, "the parent started no worker"
        parent.send_signal(signal.SIGKILL)  # no finally, no atexit: the worker is on its own
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if not _gone(pid)]
        assert not left, f"worker(s) {left} outlived their killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=30)
        for pid in workers:  # do not leave the orphan behind when the test fails
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_no_worker_outlives_a_served_app() -> None:
    from fastapi.testclient import TestClient

    from crash_service import CrashService
    from esva.apps.serve import create_app

    app = create_app(service_factory=CrashService, allowed_hosts=("testserver",))
    assert mp.active_children(), "the app's models load in a worker process"
    with TestClient(app) as client:
        assert client.get("/api/info").json()["model"] == "crash-test"
    assert mp.active_children() == []


def test_no_worker_outlives_a_batch_run(tmp_path, monkeypatch) -> None:
    from crash_service import CrashBatchWorker
    from esva.apps import batch
    from media_factory import write_media

    monkeypatch.setattr(batch, "BatchWorker", CrashBatchWorker)
    clip = write_media(tmp_path / "a.wav", video=False, duration_s=0.5)
    summary = batch.run_batch([Path(clip)], out=tmp_path / "p.csv", workers=1, progress=False)
    assert not summary.failed
    assert mp.active_children() == []


@pytest.fixture(autouse=True)
def _no_children_before() -> None:
    assert mp.active_children() == [], "an earlier test left a child process running"
