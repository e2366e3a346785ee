"""``esva align``: JSON and plot on real clips, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from esva.cli.main import main
from media_factory import write_media

RAVDESS = "ravdess_av/Actor_01/01-01-08-01-02-02-01.mp4"  # 3.3 s, full AV
STYLETALK = "av_sync/styletalk/feifeili_clip3"  # 7 s silent mp4 + same-name wav


def _one_line_error(capsys, rc, *fragments):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.mark.shared
def test_align_json_and_plot_on_a_real_clip(shared_data, tmp_path, capsys):
    clip = shared_data / RAVDESS
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    plot = tmp_path / "align.png"
    rc = main(["align", str(clip), "--json", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out)  # stdout is exactly one JSON object
    assert isinstance(data["offset_ms"], float) and abs(data["offset_ms"]) < 100.0
    assert 0.0 < data["confidence"] <= 1.0
    local = data["local_offsets_ms"]
    assert len(local) == len(data["window_start_s"]) >= 4
    assert data["face_coverage"] > 0.9
    # sub-frame: the estimate is not restricted to multiples of the 20-ms grid
    assert any(abs(v / 20.0 - round(v / 20.0)) > 0.01 for v in [data["offset_ms"], *local] if v)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.shared
def test_align_silent_video_with_separate_audio(shared_data, tmp_path, capsys):
    video = (shared_data / STYLETALK).with_suffix(".mp4")
    wav = (shared_data / STYLETALK).with_suffix(".wav")
    if not (video.exists() and wav.exists()):
        pytest.skip(f"{video} or its wav is absent")
    rc = main(["align", str(video)])
    _one_line_error(capsys, rc, "no audio stream", "--audio")
    rc = main(["align", str(video), "--audio", str(wav), "--max-offset-ms", "300"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "offset" in out and "audio lags" in out and "confidence" in out


def test_align_missing_file(tmp_path, capsys):
    rc = main(["align", str(tmp_path / "nope.mp4")])
    _one_line_error(capsys, rc, "nope.mp4", "not found")


def test_align_not_a_media_file(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    rc = main(["align", str(bad)])
    _one_line_error(capsys, rc, "notes.mp4")


def test_align_audio_only_file(tmp_path, capsys):
    wav = write_media(tmp_path / "voice.wav", video=False, duration_s=1.0)
    rc = main(["align", str(wav)])
    _one_line_error(capsys, rc, "voice.wav", "no video stream")


def test_align_video_without_a_face(tmp_path, capsys):
    clip = write_media(tmp_path / "noface.mp4", duration_s=1.0, size=(96, 64))
    rc = main(["align", str(clip), "--detector", "haar"])
    _one_line_error(capsys, rc, "noface.mp4", "no face")


def test_align_bad_detector(tmp_path, capsys):
    clip = write_media(tmp_path / "clip.mp4", duration_s=0.5)
    rc = main(["align", str(clip), "--detector", "yolo"])
    _one_line_error(capsys, rc, "unknown face detector")


@pytest.mark.shared
def test_align_with_silent_audio_is_flagged_not_guessed(shared_data, tmp_path, capsys):
    clip = shared_data / RAVDESS
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    silent = write_media(tmp_path / "silence.wav", video=False, duration_s=3.0, silent=True)
    rc = main(["align", str(clip), "--audio", str(silent), "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["offset_ms"] is None
    assert all(v is None for v in data["local_offsets_ms"])
    assert any("silent" in flag for flag in data["flags"])
