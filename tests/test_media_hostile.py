"""Hostile media: each gives a one-line EsvaError naming the file or a flagged degraded result,
never a traceback from libav, never a hang. The corpus is built here with PyAV and numpy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from esva.errors import EsvaError
from esva.media import FaceTrackerConfig, iter_frames, load_audio, load_video, probe, track_faces
from esva.media.decode import display_name
from media_factory import read_index, write_media, write_multichannel


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the test run) if the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"media call still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_line_error(call, path, match: str = "") -> EsvaError:
    with deadline(20), pytest.raises(EsvaError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert display_name(path) in message
    assert match in message
    return info.value


ALL_READERS = [probe, load_audio, load_video, lambda p: list(iter_frames(p))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3 s audio-video mp4, written twice: index at the end (default) and at the start."""
    folder = tmp_path_factory.mktemp("hostile")
    plain = write_media(folder / "plain.mp4", duration_s=3.0)
    fast = write_media(
        folder / "fast.mp4", duration_s=3.0, container_options={"movflags": "faststart"}
    )
    return plain, fast


@pytest.mark.parametrize("reader", ALL_READERS)
def test_random_bytes_named_mp4(tmp_path, reader):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    assert_one_line_error(lambda: reader(path), path, "cannot open as media")


@pytest.mark.parametrize("reader", ALL_READERS)
def test_not_a_media_file(tmp_path, reader):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_one_line_error(lambda: reader(empty), empty, "empty")
    assert_one_line_error(lambda: reader(tmp_path / "missing.mp4"), tmp_path / "missing.mp4")
    assert_one_line_error(lambda: reader(tmp_path), tmp_path, "directory")


def test_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    assert_one_line_error(lambda: probe(fifo), fifo, "not a regular file")


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.97])
def test_truncated_mp4_index_at_end(clip, tmp_path, fraction):
    """Cut before or inside the index: nothing can be decoded, the error says so."""
    data = clip[0].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    for reader in ALL_READERS:
        assert_one_line_error(lambda reader=reader: reader(path), path)


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_truncated_mp4_index_first_is_flagged(clip, tmp_path, fraction):
    """Index complete, data cut: what decodes is returned, and flagged as truncated."""
    data = clip[1].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    with deadline(20):
        video = load_video(path)
        audio = load_audio(path)
    assert 0 < len(video.frames) < 75
    assert [read_index(f) for f in video.frames] == list(range(len(video.frames)))
    assert any("truncated" in issue or "undecodable" in issue for issue in video.issues)
    assert 0 < audio.duration_s < 3.0
    assert audio.issues  # flagged


def test_video_without_audio(tmp_path):
    path = write_media(tmp_path / "silent_video.mp4", audio=False)
    info = probe(path)
    assert info.has_video and not info.has_audio and info.audio_start_s is None
    assert_one_line_error(lambda: load_audio(path), path, "no audio stream")
    assert load_audio(path, missing_ok=True) is None
    assert len(load_video(path).frames) == 25


@pytest.mark.parametrize("suffix", ["m4a", "wav"])
def test_audio_without_video(tmp_path, suffix):
    path = write_media(tmp_path / f"voice.{suffix}", video=False)
    assert not probe(path).has_video
    assert_one_line_error(lambda: load_video(path), path, "no video stream")
    assert_one_line_error(lambda: list(iter_frames(path)), path, "no video stream")
    assert load_audio(path).duration_s == pytest.approx(1.0, abs=0.06)


def test_tiny_clip(tmp_path):
    path = write_media(tmp_path / "blink.mp4", duration_s=0.05)
    audio = load_audio(path)
    assert 0 < audio.duration_s < 0.2 and np.isfinite(audio.samples).all()
    video = load_video(path, fps=25)
    assert len(video.frames) >= 1 and video.fps == 0.0  # one frame has no rate
    track = track_faces(video, FaceTrackerConfig(size=32))
    assert track.crops.shape == (len(video.frames), 32, 32, 3) and not track.mask.any()


def test_silence(tmp_path):
    path = write_media(tmp_path / "hush.mp4", silent=True, duration_s=1.0)
    audio = load_audio(path)
    assert audio.duration_s == pytest.approx(1.0, abs=0.1)
    assert np.abs(audio.samples).max() < 1e-3 and audio.issues == ()


@pytest.mark.parametrize("rate", [8000, 96000])
def test_unusual_sample_rates_in_video(tmp_path, rate):
    path = write_media(tmp_path / f"r{rate}.mp4", sample_rate=rate, channels=2, duration_s=1.0)
    assert probe(path).sample_rate == rate
    audio = load_audio(path)
    assert audio.sample_rate == 16000 and audio.native_sample_rate == rate
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert np.fft.rfftfreq(len(audio.samples), 1 / 16000)[spectrum.argmax()] == pytest.approx(
        440, abs=3
    )


def test_coded_portrait_video(tmp_path):
    path = write_media(tmp_path / "portrait.mp4", size=(64, 112), duration_s=0.2)
    video = load_video(path, max_side=56)
    assert video.frames.shape[1:] == (56, 32, 3)
    assert probe(path).height == 112


def test_non_utf8_file_name(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff.mp4"  # latin-1 bytes: invalid UTF-8
    write_media(raw, duration_s=0.4)
    as_text = os.fsdecode(raw)  # the str form Python uses (surrogate escapes)
    for name in (raw, as_text):
        assert probe(name).has_audio
        assert len(load_video(name).frames) == 10
        assert load_audio(name).duration_s > 0.3
    with open(raw, "wb") as handle:
        handle.write(b"not a video" * 50)
    error = assert_one_line_error(lambda: load_video(raw), raw, "cannot open as media")
    str(error).encode("utf-8")  # printable: no lone surrogates that would crash a print()
    assert "\\xff" in str(error)


def test_variable_frame_rate_with_duplicate_times(tmp_path):
    """Irregular frame times survive, including a 1 s jump; Matroska's millisecond clock merges
    two frames 0.1 ms apart, and the duplicate is dropped and flagged."""
    times = [0.0, 0.033, 0.1, 0.1001, 0.9, 0.95, 2.0]
    path = write_media(tmp_path / "vfr.mkv", frame_times=times, audio=False)
    video = load_video(path)
    kept = [0.0, 0.033, 0.1, 0.9, 0.95, 2.0]
    assert np.allclose(video.timestamps_s, kept, atol=1e-3)
    assert [read_index(f) for f in video.frames] == [0, 1, 2, 4, 5, 6]
    assert any("non-increasing" in issue for issue in video.issues)


def rss_bytes() -> int:
    """Current resident set size (Linux), unlike ru_maxrss not masked by earlier peaks."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_twenty_minute_file_streams_in_bounded_memory(tmp_path):
    """20 minutes at 3 fps (3600 frames) with 8 kHz audio: frames stream, memory stays flat.

    Holding every frame would take 66 MB; streaming holds a few. (~5 s on 2 cores.)
    """
    path = write_media(
        tmp_path / "long.mkv",
        duration_s=1200.0,
        fps=3,
        size=(96, 64),
        sample_rate=8000,
        acodec="pcm_s16le",
    )
    count, last, rss = 0, -1.0, []
    tracemalloc.start()
    for t, _rgb in iter_frames(path):
        assert t > last
        count, last = count + 1, t
        if count == 100:
            tracemalloc.reset_peak()  # steady state from here on
            rss_start = rss_bytes()
        if count % 200 == 0:
            rss.append(rss_bytes())
    _, frames_peak = tracemalloc.get_traced_memory()
    assert count == 3600 and last == pytest.approx(1199.667, abs=0.01)
    assert frames_peak < 2 * 2**20  # Python/numpy allocations: a few frames, not 3600
    assert max(rss) - rss_start < 32 * 2**20  # libav's buffers do not grow either

    tracemalloc.reset_peak()
    audio = load_audio(path)
    _, audio_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert audio.duration_s == pytest.approx(1200.0, abs=0.1)
    # The 16 kHz output is 19.2 M samples x 4 B = 77 MB, held twice while the chunks are joined;
    # the 8 kHz input is never held whole.
    assert audio_peak < 2.3 * audio.samples.nbytes
    print(
        f"frames peak {frames_peak / 2**20:.2f} MiB, rss growth "
        f"{(max(rss) - rss_start) / 2**20:.1f} MiB, audio peak {audio_peak / 2**20:.0f} MiB"
    )


MULTICHANNEL = [
    ("ch8.wav", 8, "pcm_s16le", False),
    ("ch16.wav", 16, "pcm_s16le", False),
    ("ch16f.wav", 16, "pcm_f32le", False),
    ("ch8.flac", 8, "flac", False),
    ("ch8.mp4", 8, "aac", True),
    ("ch16.m4a", 16, "aac", False),
]


@pytest.mark.parametrize(("name", "channels", "codec", "video"), MULTICHANNEL)
def test_any_channel_count_decodes_to_the_mono_tone(tmp_path, name, channels, codec, video):
    """8+ channels crashed the process (SIGSEGV) in load_audio: decode in a child process so a
    regression is a failed test, not a dead test run; the downmix is the channels' average."""
    path = write_multichannel(tmp_path / name, channels, codec, video=video)
    code = (
        "import sys, numpy as np; from esva.media.decode import load_audio, probe;"
        "a = load_audio(sys.argv[1]); print(probe(sys.argv[1]).channels, len(a.samples),"
        " float(np.abs(a.samples).max()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    reported, n, peak = done.stdout.split()
    assert int(reported) == channels
    assert abs(int(n) - 16_000) < 1_000  # one second at 16 kHz (AAC adds a frame of priming)
    assert 0.25 < float(peak) < 0.35, peak  # the average of equal channels, not their sum
