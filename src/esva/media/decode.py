"""Decode raw media files with PyAV: mono 16 kHz audio and RGB frames with their real timestamps.

Everything is on the container's one clock: a frame's time is its ``pts × time_base`` and an
audio clip's ``start_s`` is the time of its first decoded sample, so the alignment module sees
the true offset between the streams (e.g. a video stream that starts 33 ms after the audio).
Nothing assumes a constant frame rate: variable-frame-rate video keeps each frame's own time,
and sampling at a chosen rate picks the decoded frame nearest each target time.

Audio is converted to packed float by libswresample (PyAV's resampler: one interleaved plane
for any channel count), averaged over channels (downmix) and resampled with soxr's streaming
resampler, so a long file never holds its native-rate samples in memory. Video is a
generator (:func:`iter_frames`) that holds at most two decoded frames: a 20-minute file decodes
in bounded memory. :func:`load_video` collects a short clip into :class:`VideoFrames`.

Damaged input follows one rule: a file that cannot be opened or yields nothing raises
:class:`~esva.errors.EsvaError` with one line naming the file; a file that breaks part-way
returns what decoded before the damage, with the problem listed in ``issues`` (and logged).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soxr
from av.video.reformatter import VideoReformatter

from esva.errors import EsvaError
from esva.media.types import AudioClip, VideoFrames

log = logging.getLogger(__name__)

PathLike = str | os.PathLike | bytes

TARGET_SAMPLE_RATE = 16_000
# libav's interrupt callback aborts an open or a read that takes longer than this (seconds), so a
# stalled file system or a pathological demuxer cannot hang the pipeline.
OPEN_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 30.0
# A few undecodable packets are skipped (as ffmpeg does); past this many the stream is abandoned.
MAX_BAD_PACKETS = 50
# Audio timestamp gaps up to this long are filled with silence to keep the timeline; a larger jump
# (a hostile or broken file) is reported instead of allocating minutes of zeros.
MAX_AUDIO_GAP_S = 30.0
# A float WAV may carry NaN/inf samples: a few (a glitch) are zeroed and flagged in ``issues``;
# more than this share means the file is not a recording, and it is refused.
MAX_NONFINITE_SHARE = 0.01
# load_video refuses clips whose frames would take more memory than this (use iter_frames).
LOAD_VIDEO_MAX_BYTES = 2 << 30


# ---------------------------------------------------------------------------------------------
# Paths and opening


def as_path(path: PathLike) -> Path:
    """A :class:`Path` for ``path``; bytes (any file name the OS allows) via ``os.fsdecode``."""
    return Path(os.fsdecode(path))


def display_name(path: PathLike) -> str:
    """``path`` as printable text: undecodable bytes in a file name are shown as ``\\xNN``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


def _check_file(path: Path) -> None:
    """Reject what would make libav fail obscurely or block (a directory, a FIFO, an empty file)."""
    name = display_name(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise EsvaError("file not found", name) from None
    except OSError as exc:
        raise EsvaError(f"cannot read file ({exc.strerror})", name) from None
    if path.is_dir():
        raise EsvaError("is a directory, not a media file", name)
    if not path.is_file():  # FIFOs and devices would block or never end
        raise EsvaError("not a regular file", name)
    if st.st_size == 0:
        raise EsvaError("file is empty", name)


def _ffmpeg_message(exc: Exception) -> str:
    """libav's own words for an error, without PyAV's repetition of the file name."""
    if isinstance(exc, av.error.FFmpegError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def open_container(path: PathLike) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading with PyAV; any failure becomes a one-line :class:`EsvaError`."""
    path = as_path(path)
    _check_file(path)
    try:
        container = av.open(str(path), mode="r", timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except (av.error.FFmpegError, UnicodeError, ValueError) as exc:
        reason = _ffmpeg_message(exc)
        raise EsvaError(f"cannot open as media ({reason})", display_name(path)) from None
    try:
        yield container
    finally:
        container.close()


def _decode(
    container: av.container.InputContainer, stream: av.stream.Stream, issues: list[str]
) -> Iterator[av.AudioFrame | av.VideoFrame]:
    """Decoded frames of ``stream``, skipping bad packets and stopping cleanly at damage.

    ``container.decode`` would end at the first error; decoding packet by packet lets a few corrupt
    packets pass (as the ffmpeg command line does) and keeps what decoded before a truncation.
    Problems are appended to ``issues``.
    """
    bad = 0
    packets = 0
    last_time = None
    try:
        for packet in container.demux(stream):
            packets += packet.size > 0  # the final empty packet only flushes the decoder
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    reason = _ffmpeg_message(exc)
                    issues.append(f"gave up after {bad} undecodable packets ({reason})")
                    return
                continue
            for frame in frames:
                last_time = frame.time if frame.time is not None else last_time
                yield frame
    except av.error.FFmpegError as exc:  # demuxing failed: a truncated or damaged container
        where = "before any frame" if last_time is None else f"after {last_time:.3f} s"
        issues.append(f"stopped reading {where} ({_ffmpeg_message(exc)})")
    if bad:
        issues.append(f"skipped {bad} undecodable {stream.type} packet(s)")
    # An MP4 whose index (moov) is complete but whose data is cut short just ends early without
    # an error; the index still says how many packets there should have been.
    if stream.frames and packets < stream.frames:
        issues.append(
            f"{stream.type} stream ended early: {packets} of {stream.frames} packets "
            "(truncated file?)"
        )


def _best_stream(
    container: av.container.InputContainer, kind: str, name: str, decodable: bool = True
) -> av.stream.Stream | None:
    """The container's main ``kind`` ("audio"/"video") stream, None if it has none.

    With ``decodable``, a stream whose codec this libav build cannot decode is an error.
    """
    if not container.streams.audio and not container.streams.video:
        raise EsvaError("no audio or video stream found (damaged or truncated file?)", name)
    stream = container.streams.best(kind)
    if decodable and stream is not None and stream.codec_context is None:
        raise EsvaError(f"no decoder for its {kind} codec ({stream.codec.name})", name)
    return stream


# ---------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, read from its headers (no full decode)."""

    path: Path
    size_bytes: int
    format: str  # container format name(s), e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float  # container duration (0 when the container does not say)
    start_s: float  # container start time
    has_audio: bool
    has_video: bool
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_start_s: float | None = None  # first audio timestamp on the container clock
    video_codec: str | None = None
    fps: float | None = None  # average frame rate (VFR: an average; None when unknown)
    width: int | None = None  # coded size, before any display rotation
    height: int | None = None
    n_frames: int | None = None  # as declared by the container (None when it does not say)
    video_start_s: float | None = None  # first video timestamp on the container clock


def _stream_start_s(stream: av.stream.Stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def probe(path: PathLike) -> MediaInfo:
    """Read ``path``'s container and stream headers.

    Raises :class:`EsvaError` if the file is missing, empty, not media, or has neither an audio
    nor a video stream.
    """
    path = as_path(path)
    with open_container(path) as container:
        fields: dict = {}
        audio = _best_stream(container, "audio", display_name(path), decodable=False)
        video = _best_stream(container, "video", display_name(path), decodable=False)
        if audio is not None:
            ctx = audio.codec_context
            fields.update(
                audio_codec=ctx.name if ctx is not None else None,
                sample_rate=int(ctx.sample_rate) if ctx is not None and ctx.sample_rate else None,
                channels=int(ctx.channels) if ctx is not None and ctx.channels else None,
                audio_start_s=_stream_start_s(audio),
            )
        if video is not None:
            ctx = video.codec_context
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fields.update(
                video_codec=ctx.name if ctx is not None else None,
                fps=float(rate) if rate else None,
                width=int(ctx.width) if ctx is not None and ctx.width else None,
                height=int(ctx.height) if ctx is not None and ctx.height else None,
                n_frames=int(video.frames) or None,
                video_start_s=_stream_start_s(video),
            )
        duration = container.duration / av.time_base if container.duration else 0.0
        start = container.start_time / av.time_base if container.start_time else 0.0
        return MediaInfo(
            path=path,
            size_bytes=path.stat().st_size,
            format=container.format.name,
            duration_s=float(duration),
            start_s=float(start),
            has_audio=audio is not None,
            has_video=video is not None,
            **fields,
        )


# ---------------------------------------------------------------------------------------------
# Audio


def load_audio(
    path: PathLike, sample_rate: int = TARGET_SAMPLE_RATE, *, missing_ok: bool = False
) -> AudioClip | None:
    """Decode the audio stream of ``path`` to mono float32 at ``sample_rate``.

    Works for audio files (wav, flac, mp3, m4a, ...) and for the audio track of videos. Stereo and
    multi-channel audio (any channel count) is averaged to mono; any input rate is resampled with
    soxr (streaming, so memory is the output plus one packet). ``start_s`` is the container time
    of the first sample; gaps in the audio timestamps (up to ``MAX_AUDIO_GAP_S``) are filled with
    silence so that the samples stay on the container clock.

    A file without an audio stream raises :class:`EsvaError` ("no audio stream"), or returns
    ``None`` when ``missing_ok`` is true (e.g. a silent video, whose visual stream is still
    usable). A file that breaks part-way returns the audio before the damage, listed in ``issues``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = as_path(path)
    name = display_name(path)
    issues: list[str] = []
    with open_container(path) as container:
        stream = _best_stream(container, "audio", name)
        if stream is None:
            if missing_ok:
                return None
            raise EsvaError("no audio stream", name)
        # libswresample converts any sample format (s16, s32, flt, dbl, planar or packed) to
        # *packed* float: one interleaved plane whatever the channel count, averaged to mono
        # here; layout and rate are kept (soxr resamples below). Reading planar frames plane by
        # plane crashed the process (SIGSEGV) for 8 or more channels: PyAV keeps those planes
        # past the frame's eight data pointers. swresample's own mono downmix is not used: for
        # float output it does not normalise its matrix (eight channels at 0.3 sum to 1.32).
        to_float = av.AudioResampler(format="flt")
        chunks: list[np.ndarray] = []
        resampler: soxr.ResampleStream | None = None
        in_rate = 0
        start_s: float | None = None
        n_in = 0  # input-rate samples consumed, including silence inserted for gaps
        n_bad = 0  # non-finite input samples (a float WAV can hold NaN/inf), zeroed
        for frame in _decode(container, stream, issues):
            try:
                parts = to_float.resample(frame)
            except (ValueError, av.error.FFmpegError) as exc:  # rate or layout changed mid-way
                issues.append(f"audio format changed mid-stream, stopped there ({exc})")
                break
            if not parts:
                continue
            # A conversion without a rate change keeps samples 1:1, so the frame's time applies.
            channels = len(parts[0].layout.channels) or 1
            packed = np.concatenate([part.to_ndarray()[0] for part in parts])
            mono = packed.reshape(-1, channels).mean(axis=1, dtype=np.float32)
            bad = ~np.isfinite(mono)
            if bad.any():
                # Zero them before resampling: soxr would smear one NaN over its whole filter.
                n_bad += int(bad.sum())
                mono[bad] = 0.0
            if resampler is None:
                in_rate = int(frame.sample_rate)
                start_s = frame.time if frame.time is not None else _stream_start_s(stream)
                start_s = float(start_s or 0.0)
                resampler = soxr.ResampleStream(in_rate, sample_rate, 1, dtype="float32")
            elif frame.time is not None:
                # Keep the timeline: fill a gap in the timestamps with silence, trim an overlap.
                drift = round((frame.time - start_s) * in_rate) - n_in
                if drift > 0.01 * in_rate:
                    if drift > MAX_AUDIO_GAP_S * in_rate:
                        issues.append(f"audio timestamps jump by {drift / in_rate:.1f} s")
                    else:
                        chunks.append(resampler.resample_chunk(np.zeros(drift, np.float32)))
                        n_in += drift
                elif drift < -0.01 * in_rate:
                    mono = mono[min(-drift, len(mono)) :]
            n_in += len(mono)
            chunks.append(resampler.resample_chunk(mono))
        if resampler is None:
            raise EsvaError(f"audio stream has no decodable samples {_issues_text(issues)}", name)
        chunks.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    if n_bad:
        if n_bad > MAX_NONFINITE_SHARE * max(n_in, 1):
            raise EsvaError(
                f"audio has {n_bad} of {n_in} samples that are not finite numbers (more than "
                f"{MAX_NONFINITE_SHARE:.0%}); not a usable recording",
                name,
            )
        issues.append(f"non-finite samples repaired ({n_bad})")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    del chunks
    np.clip(samples, -1.0, 1.0, out=samples)  # resampling can overshoot full-scale input
    _log_issues(name, issues)
    return AudioClip(
        samples=samples,
        sample_rate=sample_rate,
        start_s=start_s or 0.0,
        source=path,
        native_sample_rate=in_rate,
        issues=tuple(issues),
    )


# ---------------------------------------------------------------------------------------------
# Video


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is at most ``max_side`` (never upscaled)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(
    frame: av.VideoFrame, max_side: int | None, reformatter: VideoReformatter
) -> np.ndarray:
    """RGB uint8 (H, W, 3), downscaled by libswscale and turned upright per the display matrix.

    One ``reformatter`` serves a whole stream: it keeps its swscale context, which
    ``frame.to_ndarray(format=...)`` would rebuild for every frame (20x slower: 4 ms vs 0.2 ms
    for a 640x360 frame).
    """
    width, height = _scaled_size(frame.width, frame.height, max_side)
    rgb = reformatter.reformat(frame, format="rgb24", width=width, height=height).to_ndarray()
    # Phones store portrait video as landscape plus a display rotation (counter-clockwise degrees);
    # np.rot90 also turns counter-clockwise.
    quarter_turns = round(frame.rotation / 90) % 4 if frame.rotation else 0
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns))
    return rgb


def _timed_frames(
    container: av.container.InputContainer, stream: av.stream.Stream, issues: list[str]
) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """(time, duration, frame) in presentation order with strictly increasing times.

    A frame without a timestamp gets the previous one plus the nominal frame interval; a frame
    whose time does not increase (duplicate or out-of-order pts in a damaged file) is dropped.
    """
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    nominal = 1.0 / float(rate) if rate else 1.0 / 25.0
    prev: float | None = None
    dropped = 0
    for frame in _decode(container, stream, issues):
        t = frame.time
        if t is None:
            t = (prev + nominal) if prev is not None else (_stream_start_s(stream) or 0.0)
        if prev is not None and t <= prev:
            dropped += 1
            continue
        duration = nominal
        if frame.duration and frame.time_base:
            duration = float(frame.duration * frame.time_base)
        prev = t
        yield float(t), duration, frame
    if dropped:
        issues.append(f"dropped {dropped} frame(s) with non-increasing timestamps")


def iter_frames(
    path: PathLike,
    fps: float | None = None,
    max_side: int | None = None,
    *,
    missing_ok: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream ``(timestamp_s, rgb)`` pairs from the video stream of ``path``.

    ``fps=None`` yields every decoded frame at its own time (variable frame rate kept). With
    ``fps`` set, targets are the first frame's time plus ``k / fps`` up to the end of the last
    frame; each yields the decoded frame nearest the target and that frame's *real* time (a frame
    is repeated when ``fps`` exceeds the native rate, skipped when below). ``max_side`` downscales
    so that the longer side is at most that many pixels. At most two decoded frames are held at a
    time, so memory does not grow with the file's length. The arrays are uint8 (H, W, 3) RGB,
    upright per the container's display rotation; a repeated frame is the same array object, so
    do not modify them in place.

    Raises :class:`EsvaError` when the file has no video stream (with ``missing_ok``: yields
    nothing instead, so a caller needs no separate :func:`probe` to ask) or no decodable frame;
    damage part-way ends the iteration early and is logged as a warning.
    """
    issues: list[str] = []
    yield from _frames(path, fps, max_side, issues, missing_ok)
    _log_issues(display_name(path), issues)


def _frames(
    path: PathLike,
    fps: float | None,
    max_side: int | None,
    issues: list[str],
    missing_ok: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """:func:`iter_frames`, collecting decoding problems into ``issues``."""
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    path = as_path(path)
    name = display_name(path)
    with open_container(path) as container:
        stream = _best_stream(container, "video", name)
        if stream is None:
            if missing_ok:
                return
            raise EsvaError("no video stream", name)
        stream.thread_type = "AUTO"  # frame + slice threads: ~2x on two cores for H.264
        frames = _timed_frames(container, stream, issues)
        reformatter = VideoReformatter()
        yielded = 0
        if fps is None:
            for t, _, frame in frames:
                yield t, _to_rgb(frame, max_side, reformatter)
                yielded += 1
        else:
            for t, rgb in _nearest_frames(frames, fps, max_side, reformatter):
                yield t, rgb
                yielded += 1
    if yielded == 0:
        raise EsvaError(f"video stream has no decodable frame {_issues_text(issues)}", name)


def _nearest_frames(
    frames: Iterator[tuple[float, float, av.VideoFrame]],
    fps: float,
    max_side: int | None,
    reformatter: VideoReformatter,
) -> Iterator[tuple[float, np.ndarray]]:
    """Resample a timed frame stream to ``fps`` by picking the frame nearest each target time."""
    prev: tuple[float, float, av.VideoFrame] | None = None
    t0 = 0.0
    k = 0
    cache: tuple[int, np.ndarray] | None = None  # (id of the last converted frame, its RGB)

    def rgb_of(frame: av.VideoFrame) -> np.ndarray:
        nonlocal cache
        if cache is None or cache[0] != id(frame):
            cache = (id(frame), _to_rgb(frame, max_side, reformatter))
        return cache[1]

    for current in frames:
        if prev is None:
            t0 = current[0]
        else:
            # Every target up to the current frame lies between prev and current: pick the nearer
            # one (ties go to the earlier frame, which was on screen at that instant).
            while (target := t0 + k / fps) <= current[0]:
                chosen = prev if target - prev[0] <= current[0] - target else current
                yield chosen[0], rgb_of(chosen[2])
                k += 1
        prev = current
    if prev is not None:  # targets that fall within the last frame's display time
        end = prev[0] + prev[1]
        while t0 + k / fps < end - 1e-9:
            yield prev[0], rgb_of(prev[2])
            k += 1


def load_video(
    path: PathLike,
    fps: float | None = None,
    max_side: int | None = None,
    *,
    max_bytes: int = LOAD_VIDEO_MAX_BYTES,
) -> VideoFrames:
    """All frames of a short clip as :class:`VideoFrames` (see :func:`iter_frames` for arguments).

    Refuses (with :class:`EsvaError`) a clip whose frames would need more than ``max_bytes`` of
    memory; stream long files with :func:`iter_frames` instead.
    """
    path = as_path(path)
    info = probe(path)
    if not info.has_video:
        raise EsvaError("no video stream", display_name(path))
    if info.width and info.height and info.duration_s:
        w, h = _scaled_size(info.width, info.height, max_side)
        rate = fps or info.fps or 30.0
        need = w * h * 3 * info.duration_s * rate
        if need > max_bytes:
            raise EsvaError(
                f"{info.duration_s:.0f} s of {w}x{h} video needs ~{need / 2**30:.1f} GiB; "
                "use iter_frames (streaming) or a lower fps / max_side",
                display_name(path),
            )
    issues: list[str] = []
    times: list[float] = []
    frames: list[np.ndarray] = []
    for t, rgb in _frames(path, fps, max_side, issues):
        times.append(t)
        frames.append(rgb)
    _log_issues(display_name(path), issues)
    return VideoFrames(
        frames=np.stack(frames),
        timestamps_s=np.asarray(times, dtype=np.float64),
        source=path,
        issues=tuple(issues),
    )


# ---------------------------------------------------------------------------------------------


def _issues_text(issues: list[str]) -> str:
    return f"({'; '.join(issues)})" if issues else ""


def _log_issues(name: str, issues: list[str]) -> None:
    for issue in issues:
        log.warning("%s: %s", name, issue)
