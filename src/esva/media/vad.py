"""Energy voice-activity detection: which stretches of a clip are speech.

Two readers: the fusion's voice presence (the active share of a clip,
:func:`esva.fusion.reliability.speech_presence`), and the Whisper encoders' ``speech_only``
option, whose stream mask keeps the speech frames (:func:`speech_frames`) so that a pooled voice
model's statistics leave out the clip's pauses and noise floor, a property of the recording
set-up rather than of the speaker's emotion. Leaving a corpus out, that pooling gains as one
change but not once the recipe's weighting is chosen too, so the shipped voice model pools
every frame (``benchmarks/generalise.py`` -> ``results/generalise.md``, "Speech-only pooling").

An energy VAD counts loud non-speech (music, babble) as speech; steady noise and tones it does
not.
"""

from __future__ import annotations

import numpy as np

# 25 ms frames every 10 ms; a frame is active when it is both 9 dB above the clip's noise floor
# (10th percentile of frame energy) and above -60 dBFS.
VAD_FRAME_S = 0.025
VAD_HOP_S = 0.010
VAD_ABOVE_FLOOR_DB = 9.0
VAD_MIN_DBFS = -60.0
# Fewer speech frames than this and the statistics would rest on a handful of frames: the
# whole clip is pooled instead (silence, a click, a clip of steady noise).
MIN_SPEECH_FRAMES = 5


def vad_frames(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy VAD: ``(frame start times s, active bool)`` on 25 ms frames every 10 ms."""
    x = np.asarray(samples, np.float64)
    frame, hop = round(VAD_FRAME_S * sample_rate), round(VAD_HOP_S * sample_rate)
    if len(x) < frame or frame < 1:
        return np.zeros(0), np.zeros(0, bool)
    n = 1 + (len(x) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    energy_db = 10.0 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-12)
    floor = np.percentile(energy_db, 10)
    active = (energy_db > floor + VAD_ABOVE_FLOOR_DB) & (energy_db > VAD_MIN_DBFS)
    return np.arange(n) * hop / sample_rate, active


def speech_frames(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) bool: the encoder frames (``fps`` per second from the clip's start) that hold
    an active VAD frame's centre; every frame when fewer than :data:`MIN_SPEECH_FRAMES` do."""
    mask = np.zeros(n_frames, bool)
    times, active = vad_frames(samples, sample_rate)
    if len(times) and n_frames > 0:
        centre = times + VAD_FRAME_S / 2
        frame = np.minimum(np.floor(centre * fps).astype(int), n_frames - 1)
        np.logical_or.at(mask, frame, active)
    if mask.sum() < MIN_SPEECH_FRAMES:
        mask[:] = True
    return mask


__all__ = ["MIN_SPEECH_FRAMES", "speech_frames", "vad_frames"]
