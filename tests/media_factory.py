"""Build small synthetic media files with PyAV for the media tests.

Video frames carry their own index as a row of black/white cells (a binary code readable after
lossy compression and downscaling, :func:`read_index`), so a test can tell exactly which source
frame a decoder returned. Audio is a sine tone (or silence), optionally stereo with a different
level on each channel so the downmix can be checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 12  # frame indices up to 4095 (a 20-minute file at 3 fps is 3600 frames)


def index_frame(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB frame whose top band encodes ``index`` in binary; the rest is a moving gradient."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (x * 255 // max(width - 1, 1) + index * 3 + seed) % 256
    frame[..., 1] = (y * 255 // max(height - 1, 1)) % 256
    frame[..., 2] = 128
    band = max(height // 4, 2)
    cell = width / INDEX_BITS
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[:band, int(bit * cell) : int((bit + 1) * cell)] = value
    return frame


def read_index(rgb: np.ndarray) -> int:
    """Decode the index written by :func:`index_frame` (works on downscaled frames)."""
    height, width = rgb.shape[:2]
    band = max(height // 4, 2)
    cell = width / INDEX_BITS
    index = 0
    for bit in range(INDEX_BITS):
        x0, x1 = int(bit * cell), int((bit + 1) * cell)
        # the centre of each cell, away from blurred edges
        lo, hi = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        region = rgb[band // 4 : band - band // 4 or 1, lo : max(hi, lo + 1)]
        if region.mean() > 127:
            index |= 1 << bit
    return index


def tone(duration_s: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine tone."""
    t = np.arange(round(duration_s * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_media(
    path: str | os.PathLike | bytes,
    *,
    video: bool = True,
    audio: bool = True,
    duration_s: float = 1.0,
    fps: float = 25.0,
    size: tuple[int, int] = (96, 64),
    frame_times: Sequence[float] | None = None,
    rotation: int = 0,
    vcodec: str = "libx264",
    sample_rate: int = 16000,
    channels: int = 1,
    freq: float = 440.0,
    silent: bool = False,
    acodec: str | None = None,
    audio_start_s: float = 0.0,
    audio_hole_s: float = 0.0,
    container_options: dict[str, str] | None = None,
    frame_fn=index_frame,
) -> Path:
    """Write a media file; the container follows the suffix (mp4, mkv, wav, flac, mp3, m4a, ...).

    ``frame_times`` gives explicit presentation times (variable frame rate); otherwise frames are
    at ``k / fps``. ``rotation`` stores a display rotation (counter-clockwise degrees) in the
    container, as phones do for portrait video. Stereo audio has the tone at full level on the
    left channel and half level on the right (so the mono downmix is 0.75 of the tone).
    ``audio_hole_s`` shifts the timestamps of the second half of the audio later by that much
    (a hole in the timeline, as a capture that dropped packets has).
    """
    path = Path(os.fsdecode(path))
    suffix = path.suffix.lower()
    if acodec is None:
        acodec = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".mkv": "flac"}.get(
            suffix, "aac"
        )
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        vstream = astream = None
        if video:
            rate = Fraction(fps).limit_denominator(1001)
            vstream = container.add_stream(vcodec, rate=rate)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            if vcodec == "libx264":
                vstream.options = {"preset": "ultrafast", "crf": "12"}
            if frame_times is not None:
                vstream.time_base = Fraction(1, 90000)
                vstream.codec_context.time_base = Fraction(1, 90000)
            if rotation:
                vstream.set_display_rotation(rotation)
        if audio:
            astream = container.add_stream(acodec, rate=sample_rate)
            astream.layout = "stereo" if channels == 2 else "mono"
        if vstream is not None:
            times = (
                list(frame_times)
                if frame_times is not None
                else [k / fps for k in range(max(1, round(duration_s * fps)))]
            )
            for k, t in enumerate(times):
                frame = av.VideoFrame.from_ndarray(frame_fn(k, *size), format="rgb24")
                if frame_times is not None:
                    frame.pts = round(t * 90000)
                    frame.time_base = Fraction(1, 90000)
                else:
                    frame.pts = k
                    frame.time_base = 1 / rate
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            mono = tone(duration_s, sample_rate, freq) * (0.0 if silent else 1.0)
            planes = np.stack([mono, 0.5 * mono]) if channels == 2 else mono[None]
            start = round(audio_start_s * sample_rate)
            block = 4096
            for i in range(0, planes.shape[1], block):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(planes[:, i : i + block]),
                    format="fltp",
                    layout=astream.layout.name,
                )
                frame.sample_rate = sample_rate
                hole = round(audio_hole_s * sample_rate) if i >= planes.shape[1] // 2 else 0
                frame.pts = start + i + hole
                frame.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    return path


def cut_media(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    video_s: float,
    audio_s: float | None = None,
    width: int = 320,
) -> Path:
    """The first ``video_s`` seconds of a real video (downscaled to ``width``, libx264) and the
    first ``audio_s`` (default: the same) of its sound (16 kHz mono AAC): a short real clip.
    ``audio_s > video_s`` gives a file whose soundtrack outlasts its pictures; ``audio_s=0`` a
    silent video (no audio stream; the source may have none)."""
    from esva.media.decode import iter_frames, load_audio

    audio_s = video_s if audio_s is None else audio_s
    dst = Path(dst)
    frames = []
    for t, rgb in iter_frames(src):
        if t >= video_s:
            break
        frames.append(rgb)
    height = round(frames[0].shape[0] * width / frames[0].shape[1] / 2) * 2
    sound = load_audio(src) if audio_s > 0 else None
    samples = sound.samples[: round(audio_s * sound.sample_rate)] if sound else np.zeros(0)
    with av.open(str(dst), mode="w") as container:
        vstream = container.add_stream("libx264", rate=30)  # RAVDESS: 29.97 fps
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"preset": "ultrafast", "crf": "18"}
        if sound is not None:
            astream = container.add_stream("aac", rate=sound.sample_rate)
            astream.layout = "mono"
        for k, rgb in enumerate(frames[: round(video_s * 30)]):
            small = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width, height)
            small.pts = k
            container.mux(vstream.encode(small))
        container.mux(vstream.encode(None))
        if sound is None:
            return dst
        for i in range(0, len(samples), 4096):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[None, i : i + 4096]), format="fltp", layout="mono"
            )
            frame.sample_rate = sound.sample_rate
            frame.pts = i
            container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
    return dst


def write_voice(path, seconds: float = 2.5, sr: int = 16_000):
    """A voiced, vowel-like sound with vibrato (not speech: only the pipeline is tested)."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 160 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 * np.hanning(len(t))
    import soundfile as sf

    sf.write(path, x.astype(np.float32), sr)
    return path


# Channel layouts libav names for the channel counts the hostile tests use.
LAYOUTS = {2: "stereo", 6: "5.1", 8: "7.1", 16: "hexadecagonal"}


def write_multichannel(
    path: str | os.PathLike,
    channels: int,
    codec: str = "pcm_s16le",
    *,
    duration_s: float = 1.0,
    rate: int = 16_000,
    amplitude: float = 0.3,
    video: bool = False,
) -> Path:
    """An audio file (or an mp4 with ``video``) whose ``channels`` channels all carry one tone.

    Frames are built packed (one interleaved plane) and converted to the codec's own sample
    format by libswresample: PyAV cannot build a planar frame of more than eight channels.
    """
    path = Path(path)
    layout = LAYOUTS.get(channels, f"{channels}c")
    mono = tone(duration_s, rate, 220.0, amplitude)
    with av.open(str(path), "w") as container:
        if video:
            vstream = container.add_stream("libx264", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        stream = container.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name
        convert = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        step = 1024
        for start in range(0, len(mono), step):
            chunk = np.repeat(mono[start : start + step, None], channels, axis=1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk.reshape(1, -1)), format="flt", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            for converted in convert.resample(frame):
                for packet in stream.encode(converted):
                    container.mux(packet)
        for converted in convert.resample(None):
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if video:
            for index in range(round(duration_s * 10)):
                frame = av.VideoFrame.from_ndarray(index_frame(index, 64, 48), format="rgb24")
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
    return path
