"""esva.media.decode: audio at 16 kHz, frames with real timestamps, on synthetic and real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esva.errors import EsvaError
from esva.media import AudioClip, VideoFrames, iter_frames, load_audio, load_video, probe
from media_factory import index_frame, read_index, tone, write_media

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS_AV = SHARED / "ravdess_av" / "Actor_01"
RAVDESS_SPEECH = SHARED / "ravdess_speech" / "Actor_01"
AV_SYNC = SHARED / "av_sync"
needs_shared = pytest.mark.skipif(
    not RAVDESS_AV.is_dir(), reason=f"shared data not found at {SHARED}"
)


def peak_hz(clip: AudioClip) -> float:
    """Frequency of the strongest spectral peak."""
    spectrum = np.abs(np.fft.rfft(clip.samples * np.hanning(len(clip.samples))))
    return float(np.fft.rfftfreq(len(clip.samples), 1 / clip.sample_rate)[spectrum.argmax()])


def onset_s(clip: AudioClip, threshold: float = 0.1) -> float:
    """Container time of the first sample louder than ``threshold``."""
    return clip.start_s + int(np.argmax(np.abs(clip.samples) > threshold)) / clip.sample_rate


# --------------------------------------------------------------------------------------------
# Synthetic files


def test_probe_reports_streams(tmp_path):
    path = write_media(tmp_path / "a.mp4", duration_s=1.0, fps=25, channels=2, sample_rate=44100)
    info = probe(path)
    assert info.has_audio and info.has_video
    assert (info.sample_rate, info.channels, info.audio_codec) == (44100, 2, "aac")
    assert (info.width, info.height, info.n_frames) == (96, 64, 25)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    assert info.size_bytes == path.stat().st_size
    assert info.audio_start_s == pytest.approx(0.0, abs=1e-3)


def test_load_audio_downmixes_and_resamples(tmp_path):
    path = write_media(tmp_path / "st.mp4", duration_s=1.0, channels=2, sample_rate=44100)
    clip = load_audio(path)
    assert clip.sample_rate == 16000 and clip.native_sample_rate == 44100
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(1.0, abs=0.1)  # AAC pads up to one frame
    assert peak_hz(clip) == pytest.approx(440, abs=3)
    # left channel at 0.5, right at 0.25: the mono mean is 0.375
    middle = clip.samples[4000:12000]
    assert np.sqrt(2) * middle.std() == pytest.approx(0.375, rel=0.08)
    assert clip.issues == ()


@pytest.mark.parametrize(("suffix", "rate"), [("wav", 8000), ("flac", 96000), ("mp3", 44100)])
def test_audio_files(tmp_path, suffix, rate):
    path = write_media(tmp_path / f"a.{suffix}", video=False, duration_s=1.0, sample_rate=rate)
    info = probe(path)
    assert info.has_audio and not info.has_video and info.sample_rate == rate
    clip = load_audio(path)
    assert clip.sample_rate == 16000 and clip.native_sample_rate == rate
    assert clip.duration_s == pytest.approx(1.0, abs=0.06)
    assert peak_hz(clip) == pytest.approx(440, abs=3)
    if suffix in ("wav", "flac"):  # lossless: the resampled tone is the tone
        expected = tone(1.0, 16000)
        n = min(len(expected), len(clip.samples)) - 200
        assert np.abs(clip.samples[200:n] - expected[200:n]).max() < 0.01


def test_custom_sample_rate(tmp_path):
    path = write_media(tmp_path / "a.wav", video=False, duration_s=0.5, sample_rate=16000)
    clip = load_audio(path, sample_rate=22050)
    assert clip.sample_rate == 22050 and len(clip.samples) == pytest.approx(0.5 * 22050, abs=2)
    with pytest.raises(ValueError):
        load_audio(path, sample_rate=0)


def test_audio_start_is_on_the_container_clock(tmp_path):
    """Audio that starts 0.5 s into the file: the tone's onset is reported at 0.5 s."""
    path = write_media(tmp_path / "late.mp4", duration_s=1.0, audio_start_s=0.5)
    info = probe(path)
    clip = load_audio(path)
    assert info.video_start_s == pytest.approx(0.0)
    assert 0.3 < info.audio_start_s <= 0.5
    assert clip.start_s == pytest.approx(info.audio_start_s, abs=1e-3)
    assert onset_s(clip) == pytest.approx(0.5, abs=0.005)


def test_audio_timestamp_hole_is_filled_with_silence(tmp_path):
    """Samples stay on the container clock: a 0.5 s hole in the audio timestamps becomes 0.5 s
    of silence, so everything after it is still at its true time."""
    path = write_media(
        tmp_path / "hole.mkv", video=False, acodec="pcm_s16le", duration_s=2.0, audio_hole_s=0.5
    )
    clip = load_audio(path)
    assert clip.duration_s == pytest.approx(2.5, abs=0.01)
    start = 4096 * 4  # the factory shifts the 4096-sample frames from the middle (16000) on
    hole = clip.samples[start + 400 : start + 7600]
    assert np.abs(hole).max() < 1e-3
    after = clip.samples[start + 8400 : start + 12000]
    assert np.sqrt(2) * after.std() == pytest.approx(0.5, rel=0.05)


def test_native_frames_in_order_with_times(tmp_path):
    path = write_media(tmp_path / "v.mp4", duration_s=1.0, fps=25, audio=False)
    pairs = list(iter_frames(path))
    assert [read_index(rgb) for _, rgb in pairs] == list(range(25))
    assert np.allclose([t for t, _ in pairs], np.arange(25) / 25)
    rgb = pairs[3][1]
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 96, 3)
    # colours survive: the frame matches what was encoded (lossy, so loosely)
    assert np.abs(rgb.astype(int) - index_frame(3, 96, 64)).mean() < 6


@pytest.mark.parametrize("fps", [10.0, 25.0, 40.0])
def test_sampling_picks_nearest_frame(tmp_path, fps):
    native = 25
    path = write_media(tmp_path / "v.mp4", duration_s=1.0, fps=native, audio=False)
    pairs = list(iter_frames(path, fps=fps))
    assert len(pairs) == int(np.ceil(1.0 * fps - 1e-9))  # targets within the last frame's span
    frame_times = np.arange(native) / native
    for k, (t, rgb) in enumerate(pairs):
        distance = np.abs(frame_times - k / fps)
        nearest = set(np.flatnonzero(distance < distance.min() + 1e-6))  # a tie allows either
        index = read_index(rgb)
        assert index in nearest
        assert t == pytest.approx(index / native)  # the real time of the frame used


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.52]
    path = write_media(tmp_path / "vfr.mp4", frame_times=times, audio=False)
    native = load_video(path)
    assert np.allclose(native.timestamps_s, times, atol=1e-4)
    assert [read_index(f) for f in native.frames] == list(range(len(times)))
    sampled = load_video(path, fps=10)
    for k, (t, frame) in enumerate(zip(sampled.timestamps_s, sampled.frames, strict=True)):
        nearest = int(np.argmin(np.abs(np.asarray(times) - k / 10)))
        assert read_index(frame) == nearest and t == pytest.approx(times[nearest], abs=1e-4)
    assert sampled.timestamps_s[-1] <= times[-1]


def test_max_side_downscales(tmp_path):
    path = write_media(tmp_path / "v.mp4", size=(160, 96), duration_s=0.2, audio=False)
    video = load_video(path, max_side=80)
    assert video.frames.shape[1:] == (48, 80, 3)
    assert [read_index(f) for f in video.frames] == list(range(len(video.frames)))


def test_display_rotation_is_applied(tmp_path):
    """Portrait phone video: landscape pixels plus a rotation in the container."""
    path = write_media(tmp_path / "r.mp4", size=(96, 64), rotation=90, duration_s=0.2)
    video = load_video(path)
    assert video.frames.shape[1:] == (96, 64, 3)  # upright: portrait
    expected = np.rot90(index_frame(2, 96, 64))  # 90 degrees counter-clockwise
    assert np.abs(video.frames[2].astype(int) - expected).mean() < 6


def test_load_video_refuses_huge_clips(tmp_path):
    path = write_media(tmp_path / "v.mp4", duration_s=1.0, audio=False)
    with pytest.raises(EsvaError, match="iter_frames"):
        load_video(path, max_bytes=10_000)
    assert isinstance(load_video(path), VideoFrames)


def test_iterator_closes_early(tmp_path):
    path = write_media(tmp_path / "v.mp4", duration_s=1.0, audio=False)
    frames = iter_frames(path)
    t, _ = next(frames)
    frames.close()  # must release the container without error
    assert t == 0.0


# --------------------------------------------------------------------------------------------
# Real data


@needs_shared
def test_ravdess_video_decodes():
    path = RAVDESS_AV / "01-01-01-01-01-01-01.mp4"
    info = probe(path)
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    video = load_video(path)
    assert video.frames.shape == (info.n_frames, 360, 640, 3)
    assert np.allclose(np.diff(video.timestamps_s), 1001 / 30000, atol=1e-6)
    at25 = load_video(path, fps=25)
    assert len(at25.frames) == pytest.approx(video.timestamps_s[-1] * 25 + 1, abs=1)


@needs_shared
def test_ravdess_audio_matches_flac_twin_at_known_lag():
    """The corpus README: the audio-only FLAC starts 1600 samples at 48 kHz (33.3 ms) later."""
    from scipy.signal import correlate

    video_audio = load_audio(RAVDESS_AV / "01-01-01-01-01-01-01.mp4")
    flac = load_audio(RAVDESS_SPEECH / "03-01-01-01-01-01-01.flac")
    assert video_audio.native_sample_rate == 48000 and flac.native_sample_rate == 16000
    x, y = video_audio.samples, flac.samples
    c = correlate(x, y, mode="full", method="fft")
    lag = int(c.argmax()) - (len(y) - 1)  # x[n + lag] ~ y[n]
    assert lag == pytest.approx(1600 / 3, abs=2)
    a, b = x[lag : lag + len(y)], y[: len(x) - lag]
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.95


@needs_shared
@pytest.mark.parametrize("folder", ["pc-avs", "video-retalking", "styletalk"])
def test_av_sync_clips_decode(folder):
    clips = sorted((AV_SYNC / folder).glob("*.mp4"))[:2]
    assert clips
    for path in clips:
        info = probe(path)
        first = next(iter_frames(path, fps=25, max_side=128))
        assert first[1].ndim == 3 and max(first[1].shape[:2]) <= 128
        if folder == "styletalk":  # silent video with a separate wav
            assert not info.has_audio
            assert load_audio(path, missing_ok=True) is None
            with pytest.raises(EsvaError, match="no audio stream"):
                load_audio(path)
            wav = load_audio(path.with_suffix(".wav"))
            assert abs(wav.duration_s - info.duration_s) < 0.1
        else:
            clip = load_audio(path)
            assert clip.sample_rate == 16000 and clip.samples.ndim == 1
            assert abs(clip.duration_s - info.duration_s) < 0.1
            if folder == "video-retalking":
                assert info.sample_rate == 44100 and info.channels == 2
