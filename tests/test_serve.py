"""esva serve without the model: the HTTP contract (uploads, limits, errors, admission, page).

A stand-in service replaces the ESVA model so that these run in seconds; the real model, the
load test and the browser are in test_serve_real.py.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from esva.apps import serve as serve_mod
from esva.apps.serve import create_app, safe_name
from esva.errors import EsvaError
from media_factory import write_media
from serve_client import ThreadServer, post_chunked, post_files, request


class FakeService:
    """Records what it was given; behaves as told by the file's name."""

    name = "fake"
    classes = ("neutral", "happy")

    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path | None, bool, int]] = []
        self.release = threading.Event()
        self.release.set()
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def predict(self, path: Path, audio: Path | None = None) -> dict:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.calls.append((path, audio, path.exists(), path.stat().st_size))
            self.release.wait(timeout=30)
            tail = path.read_bytes()[-16:]
            if tail.endswith(b"bug"):
                raise RuntimeError("a bug")
            if tail.endswith(b"user-error"):
                raise EsvaError("no usable audio, face or text in the clip", path)
            return {
                "file": str(path),
                "label": "happy",
                "probabilities": {"neutral": 0.25, "happy": 0.75},
                "offset_ms": float("nan"),
                "flags": [f"read {path}"],
                "timeline": [],
            }
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("media")
    png = d / "x.png"
    import cv2

    cv2.imwrite(str(png), np.full((32, 32, 3), 200, np.uint8))
    return {
        "wav": write_media(d / "a.wav", video=False, duration_s=0.5).read_bytes(),
        "mp4": write_media(d / "v.mp4", duration_s=0.5).read_bytes(),
        "png": png.read_bytes(),
    }


@pytest.fixture(scope="module")
def server():
    service = FakeService()
    app = create_app(service=service, max_upload_mb=0.25, concurrency=1, queue=2)
    with ThreadServer(app) as srv:
        srv.service = service
        srv.app = app
        yield srv


def _upload_dirs(server) -> list[Path]:
    return list(server.app.state.upload_root.iterdir())


def test_health_info_and_page(server):
    assert request(server.url + "/api/health") == (200, {"status": "ok"})
    status, info = request(server.url + "/api/info")
    assert status == 200
    assert info["classes"] == ["neutral", "happy"]
    assert info["max_upload_mb"] == 0.25
    assert info["explain"] is False and "train-llm" in info["explain_unavailable"]
    status, page = request(server.url + "/")
    assert status == 200 and '<script src="/static/app.js">' in page
    for asset in ("app.js", "style.css"):
        status, body = request(f"{server.url}/static/{asset}")
        assert status == 200 and len(body) > 1000
    # The page loads nothing from elsewhere: it must work offline.
    for name in ("index.html", "app.js", "style.css"):
        text = (serve_mod.WEB_DIR / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_predict_answers_the_service_json_without_server_paths(server, media):
    status, body = post_files(server.url + "/api/predict", {"file": ("clip.WAV", media["wav"])})
    assert status == 200, body
    assert body["label"] == "happy" and body["probabilities"]["happy"] == 0.75
    assert body["file"] == "clip.WAV"  # the client's name, not the temporary path
    assert body["offset_ms"] is None  # NaN is not JSON
    assert body["flags"] == ["read clip.WAV"]
    path, audio, existed, size = server.service.calls[-1]
    assert existed and size == len(media["wav"]) and audio is None
    assert path.name == "file.wav"  # the server chose it; the suffix is lower-cased
    assert not path.exists() and not path.parent.exists()  # deleted after the answer


def test_client_file_name_never_chooses_a_path(server, media):
    status, body = post_files(
        server.url + "/api/predict", {"file": ("../../../../tmp/evil/x.mp4", media["mp4"])}
    )
    assert status == 200, body
    assert body["file"] == "x.mp4"
    path = server.service.calls[-1][0]
    assert path.name == "file.mp4" and path.parent.parent.name.startswith("esva-serve-")
    assert not Path("/tmp/evil").exists()
    assert safe_name("C:\\Users\\me\\clip.MoV") == ("clip.MoV", ".mov")
    assert safe_name("a.mp4\x00.exe") == ("a.mp4.exe", ".exe")
    assert safe_name("noext")[1] == "" and safe_name(".hidden")[1] == ""
    assert safe_name("x.m%4")[1] == ""


def test_separate_audio_field(server, media):
    status, body = post_files(
        server.url + "/api/predict",
        {"file": ("v.mp4", media["mp4"]), "audio": ("voice.wav", media["wav"])},
    )
    assert status == 200, body
    path, audio, *_ = server.service.calls[-1]
    assert audio is not None and audio.name == "audio.wav" and audio.parent == path.parent
    # A separate audio must be audio, by suffix and by content.
    status, body = post_files(
        server.url + "/api/predict",
        {"file": ("v.mp4", media["mp4"]), "audio": ("v2.mp4", media["mp4"])},
    )
    assert status == 415, body


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("tool.exe", b"MZ\x90\x00" * 100, 415, "unsupported file type .exe"),
        ("notes.txt", b"hello\n" * 10, 415, "unsupported file type .txt"),
        ("noext", b"\x00" * 100, 415, "(no suffix)"),
        (
            "random.mp4",
            bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8)),
            400,
            "cannot open as media",
        ),
        ("empty.wav", b"", 400, "file is empty"),
        ("picture.mp4", "png", 415, "not audio or video"),
    ],
)
def test_bad_uploads_are_client_errors(server, media, name, content, status, words):
    calls = len(server.service.calls)
    content = media[content] if isinstance(content, str) else content
    got, body = post_files(server.url + "/api/predict", {"file": (name, content)})
    assert got == status, body
    assert set(body) == {"error"} and words in body["error"]
    assert "/tmp" not in body["error"] and "esva-serve" not in body["error"]
    assert len(server.service.calls) == calls  # the model never saw it


def test_malformed_requests(server, media):
    url = server.url + "/api/predict"
    assert request(url, b"{}", "application/json")[0] == 415
    status, body = post_files(url, {"video": ("a.wav", media["wav"])})
    assert status == 400 and "field 'file'" in body["error"]
    status, body = request(url, b"--xx\r\nnonsense", "multipart/form-data; boundary=xx")
    assert status == 400 and set(body) == {"error"}
    status, body = request(server.url + "/api/nowhere")
    assert status == 404 and set(body) == {"error"}
    status, body = request(server.url + "/api/predict")  # GET
    assert status == 405 and set(body) == {"error"}


def test_oversize_is_refused_while_streaming(server, media):
    url = server.url + "/api/predict"
    big = media["wav"] + b"\x00" * (300 * 1024)  # limit is 0.25 MB
    status, body = post_files(url, {"file": ("big.wav", big)})
    assert status == 413 and "0.25 MB" in body["error"]
    # Without a Content-Length the limit holds as the bytes arrive: 40 MB offered, refused.
    boundary = "b0undary"

    def chunks():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.wav"\r\n\r\n'
        ).encode()
        for _ in range(640):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    calls = len(server.service.calls)
    status, body = post_chunked(server.port, "/api/predict", chunks(), boundary)
    assert status == 413, body
    assert len(server.service.calls) == calls
    assert _upload_dirs(server) == []  # nothing left behind
    assert request(server.url + "/api/health")[0] == 200


def test_a_stalled_upload_is_dropped(server, media, monkeypatch):
    monkeypatch.setattr(serve_mod, "UPLOAD_IDLE_S", 0.5)
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\n\r\n--zz\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + media["wav"][:1000])  # then nothing more
        t0 = time.monotonic()
        reply = b""
        while b"}" not in reply and (part := sock.recv(4096)):
            reply += part
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 408") and "upload stalled" in reply
    assert time.monotonic() - t0 < 5
    assert server.app.state.gate.admitted == 0
    assert _upload_dirs(server) == []


def test_pipeline_errors_are_400_and_bugs_are_500(server, media):
    url = server.url + "/api/predict"
    status, body = post_files(url, {"file": ("v.mp4", media["mp4"] + b"user-error")})
    assert status == 400
    assert body == {"error": "v.mp4: no usable audio, face or text in the clip"}
    status, body = post_files(url, {"file": ("v.mp4", media["mp4"] + b"bug")})
    assert status == 500 and "see the server log" in body["error"]
    assert request(server.url + "/api/health") == (200, {"status": "ok"})


def test_explain_without_an_adapter_is_503(server, media):
    calls = len(server.service.calls)
    status, body = post_files(server.url + "/api/explain", {"file": ("v.mp4", media["mp4"])})
    assert status == 503 and "LLM adapter" in body["error"]
    assert len(server.service.calls) == calls


def test_explain_with_an_explainer(media):
    seen = []

    def explainer(path, audio, task):
        seen.append((path.name, task))
        return {"file": str(path), "label": "happy", "explanation": "She smiles.", "flags": []}

    app = create_app(service=FakeService(), explainer=explainer, max_upload_mb=1)
    with ThreadServer(app) as srv:
        url = srv.url + "/api/explain"
        status, body = post_files(url, {"file": ("v.mp4", media["mp4"]), "task": "reason"})
        assert status == 200 and body["explanation"] == "She smiles." and body["file"] == "v.mp4"
        status, body = post_files(url, {"file": ("v.mp4", media["mp4"]), "task": "poetry"})
        assert status == 400 and "unknown task" in body["error"]
        assert request(srv.url + "/api/info")[1]["explain"] is True
        # the training prompts' names are not tasks (one vocabulary: esva.tasks)
        status, body = post_files(url, {"file": ("v.mp4", media["mp4"]), "task": "reasoning"})
        assert status == 400 and "unknown task" in body["error"]
    assert seen == [("file.mp4", "reason")]


def test_concurrency_queue_and_a_responsive_loop(server, media):
    """concurrency=1, queue=2: three requests are admitted, the fourth is 503 at once, and
    /api/health answers while the model works."""
    service = server.service
    service.release.clear()
    url = server.url + "/api/predict"
    try:
        with ThreadPoolExecutor(4) as pool:
            held = [pool.submit(post_files, url, {"file": ("a.wav", media["wav"])})]
            deadline = time.monotonic() + 10
            while service.running == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            held += [pool.submit(post_files, url, {"file": ("a.wav", media["wav"])}) for _ in "ab"]
            while server.app.state.gate.admitted < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            t0 = time.monotonic()
            assert request(server.url + "/api/health", timeout=5) == (200, {"status": "ok"})
            assert time.monotonic() - t0 < 2
            status, body = post_files(url, {"file": ("a.wav", media["wav"])}, timeout=10)
            assert status == 503 and "busy" in body["error"]
            service.release.set()
            assert [f.result(timeout=30)[0] for f in held] == [200, 200, 200]
    finally:
        service.release.set()
    assert service.peak == 1  # never two inferences at once


def test_cli_serve_help_and_bad_model(tmp_path, capsys):
    from esva.cli.main import main

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--max-upload-mb", "--model", "--llm-model", "--queue"):
        assert option in out
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["serve", "--llm-model", str(tmp_path / "nope")]) == 2
    assert "LLM adapter folder not found" in capsys.readouterr().err
