"""esva serve with the shipped model on real clips: a load test on loopback and a real browser.

One server process for the module (`esva serve` on a free 127.0.0.1 port, --max-upload-mb 1);
its peak resident memory is read from /proc and printed (run with -s to see it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from serve_client import HOST, free_port, post_files, request

pytestmark = [pytest.mark.shared, pytest.mark.slow]

AV_CLIP = "ravdess_av/Actor_01/01-01-08-01-01-02-01.mp4"
SPEECH_CLIP = "ravdess_speech/Actor_01/03-01-05-01-01-01-01.flac"
N_CONCURRENT = 20


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.fixture(scope="module")
def server(shared_data):
    for clip in (AV_CLIP, SPEECH_CLIP):
        if not (shared_data / clip).is_file():
            pytest.skip(f"{shared_data / clip} is absent (see ../shared/data/README.md)")
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "esva.cli.main", "serve", "--host", HOST, "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--max-upload-mb", "1", "--no-explain"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 240  # the model and its encoders load before the port opens
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"esva serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if request(url + "/api/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("esva serve did not answer /api/health within 240 s")
            time.sleep(0.5)
        yield {"url": url, "pid": proc.pid, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


def test_load_and_errors_on_loopback(server, shared_data):
    url, pid = server["url"], server["pid"]
    clip = (shared_data / SPEECH_CLIP).read_bytes()
    predict = url + "/api/predict"
    status, single = post_files(predict, {"file": ("speech.flac", clip)})
    assert status == 200, single
    assert single["label"] == "angry"  # RAVDESS emotion 05; the shipped model gets it right
    rss_after_one = _status_kb(pid, "VmRSS")

    t0 = time.monotonic()
    with ThreadPoolExecutor(N_CONCURRENT) as pool:
        answers = list(
            pool.map(
                lambda _: post_files(predict, {"file": ("speech.flac", clip)}, timeout=120),
                range(N_CONCURRENT),
            )
        )
    seconds = time.monotonic() - t0
    assert [s for s, _ in answers] == [200] * N_CONCURRENT, [b for s, b in answers if s != 200]
    assert {b["label"] for _, b in answers} == {single["label"]}
    for _, body in answers:
        assert body["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)

    # Hostile and wrong uploads: client errors, and the server goes on answering.
    rng = np.random.default_rng(0)
    cases = [
        ("big.flac", clip + bytes(1_100_000), 413),  # --max-upload-mb 1
        ("random.mp4", rng.integers(0, 256, 50_000, np.uint8).tobytes(), 400),
        ("setup.exe", b"MZ" + bytes(1000), 415),
        ("notes.txt", b"not media\n" * 50, 415),
    ]
    for name, data, expected in cases:
        status, body = post_files(predict, {"file": (name, data)})
        assert status == expected, (name, body)
        assert set(body) == {"error"}, body
        assert request(url + "/api/health") == (200, {"status": "ok"})
    status, body = post_files(url + "/api/explain", {"file": ("speech.flac", clip)})
    assert status == 503 and "LLM adapter" in body["error"]

    rss_after = _status_kb(pid, "VmRSS")
    peak = _status_kb(pid, "VmHWM")
    print(
        f"\nesva serve load test: {N_CONCURRENT} concurrent /api/predict of a "
        f"{len(clip) / 1024:.0f} KB 3.9-s flac in {seconds:.1f} s, all 200 '{single['label']}'; "
        f"server RSS {rss_after_one / 1024:.0f} MB after one request, {rss_after / 1024:.0f} MB "
        f"after the load, peak (VmHWM) {peak / 1024:.0f} MB"
    )
    # Memory stays flat: twenty more requests do not grow the process by more than a little.
    assert rss_after - rss_after_one < 150 * 1024


def _chromium() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    if not browser or not driver:
        pytest.skip("chromium or chromedriver is absent (apt-get install chromium chromium-driver)")
    return browser, driver


def test_page_in_a_real_browser(server, shared_data, tmp_path):
    browser, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip = shared_data / AV_CLIP
    status, api = post_files(
        server["url"] + "/api/predict", {"file": (clip.name, clip.read_bytes())}
    )
    assert status == 200, api

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,1600",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(server["url"] + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "classes:" in d.find_element(By.ID, "model-info").text)
        # What a drop does: the file goes to the page's file input.
        driver.find_element(By.ID, "file-input").send_keys(str(clip.resolve()))
        WebDriverWait(driver, 120).until(
            lambda d: (
                d.find_element(By.ID, "result").is_displayed()
                or d.find_element(By.ID, "error").is_displayed()
            )
        )
        error = driver.find_element(By.ID, "error")
        assert not error.is_displayed(), error.text
        label = driver.find_element(By.ID, "label").get_attribute("textContent")
        assert label == api["label"]  # the page shows what the API answered
        badge = driver.find_element(By.ID, "certainty")
        # the calibrated rule's verdict: the "uncertain" badge exactly when not confident
        assert badge.is_displayed() == (api["confident"] is False)
        if badge.is_displayed():
            assert badge.text == "uncertain"
        # The bars, the timeline, the C(τ) curve and the clip itself are on the page.
        bars = driver.find_elements(By.CSS_SELECTOR, "#probs .fill")
        assert len(bars) == len(api["probabilities"])
        lines = driver.find_elements(By.CSS_SELECTOR, "#timeline polyline")
        assert len(lines) == len(api["probabilities"])
        assert driver.find_elements(By.CSS_SELECTOR, "#xcorr polyline") != []
        assert "ms" in driver.find_element(By.ID, "offset").text
        src = driver.find_element(By.ID, "media").get_attribute("src")
        assert src.startswith("blob:")
        explanation = driver.find_element(By.ID, "explanation").text
        assert explanation.startswith("Not available")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, height + 200)
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("ESVA_SERVE_SCREENSHOT"):  # refresh docs/serve.png by hand
            shutil.copy(shot, os.environ["ESVA_SERVE_SCREENSHOT"])
    finally:
        driver.quit()
