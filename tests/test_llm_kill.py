"""``esva train-llm`` killed with SIGKILL mid-run, then resumed: nothing finished is lost, nothing
corrupt is left, and the result equals an uninterrupted run bit for bit (tiny random Llama)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from esva.io import remove_stale_temps
from test_llm_recipe import make_store, write_config

EPOCHS = 4  # 2 optimizer steps per epoch: 8 steps, a checkpoint after each


def _cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "esva.cli.main", "train-llm", "--config", str(config), *extra]


def _state(run: Path) -> dict | None:
    try:
        return json.loads((run / "checkpoint" / "trainer_state.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet (the rename makes a half-written one impossible)


def test_kill_9_mid_run_then_resume_equals_a_clean_run(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clean = write_config(tmp_path / "a", store, epochs=EPOCHS, checkpoint_every=1)
    subprocess.run(_cmd(clean), env=env, check=True, capture_output=True, timeout=600)

    config = write_config(tmp_path / "b", store, epochs=EPOCHS, checkpoint_every=1)
    run = tmp_path / "b" / "run"
    proc = subprocess.Popen(
        _cmd(config), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        state = _state(run)
        if state is not None and state["step"] >= 2:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = _state(run)
    assert state is not None, "a checkpoint must survive the kill"
    assert 2 <= state["step"] < 2 * EPOCHS, "the kill must land mid-run"
    assert not (run / "best" / "esva_llm.json").exists() or state["best_epoch"] >= 1

    subprocess.run(_cmd(config, "--resume"), env=env, check=True, capture_output=True, timeout=600)
    a = load_file(tmp_path / "a" / "run" / "checkpoint" / "model.safetensors")
    b = load_file(run / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    metrics = [
        [json.loads(line) for line in (tmp_path / x / "run" / "metrics.jsonl").open()] for x in "ab"
    ]
    assert len(metrics[1]) == EPOCHS, "every finished epoch is logged once, none lost or doubled"
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in metrics[0]] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in metrics[1]
    ]
    # Nothing from the resumed run is left half-written. A temporary file of the killed process
    # may remain (kill -9 runs no cleanup): it must be recognisable as that orphan, so that
    # esva.io.remove_stale_temps (run when a run restarts) deletes it and nothing else.
    leftovers = [p for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert all(f".pid{proc.pid}." in p.name for p in leftovers), leftovers
    for folder in {p.parent for p in leftovers}:
        remove_stale_temps(folder)
    assert not [p for p in run.rglob("*") if p.name.endswith((".tmp", ".old"))]
