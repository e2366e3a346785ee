"""The data types that flow from ``esva.media`` into ``esva.encoders``.

All times are seconds on the container's one clock, so the alignment module can see the true
offset between the audio and the video streams (``start_s`` of each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class AudioClip:
    """Mono float32 samples in [-1, 1] at ``sample_rate`` (16 kHz after decoding)."""

    samples: np.ndarray  # (N,) float32
    sample_rate: int
    start_s: float = 0.0  # container time of the first sample
    source: Path | None = None
    native_sample_rate: int | None = None  # the file's rate before resampling
    issues: tuple[str, ...] = ()  # decoding problems met (truncation, bad packets); empty if none

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass
class VideoFrames:
    """Decoded RGB frames with their presentation times (variable frame rate is kept)."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    timestamps_s: np.ndarray  # (N,) float64, container clock
    source: Path | None = None
    issues: tuple[str, ...] = ()  # decoding problems met (truncation, bad packets); empty if none

    @property
    def fps(self) -> float:
        """Mean frame rate from the timestamps (for VFR video this is an average)."""
        if len(self.timestamps_s) < 2:
            return 0.0
        span = float(self.timestamps_s[-1] - self.timestamps_s[0])
        return (len(self.timestamps_s) - 1) / span if span > 0 else 0.0


@dataclass
class FaceTrack:
    """One face track: crops resized for an encoder, with a mask for frames without a face.

    ``mask`` is True where the frame has a face crop: detected in that frame, or interpolated /
    held between detections (see ``esva.media.faces.FaceTrackerConfig``); ``detected`` tells
    which frames had an actual detection.
    """

    crops: np.ndarray  # (N, S, S, C) uint8, C = 3 (RGB) or 1 (grey); zeros where mask is False
    timestamps_s: np.ndarray  # (N,) float64
    mask: np.ndarray  # (N,) bool, True where a face was found
    # (N, 4) float32 x0, y0, x1, y1 in frame pixels (the square crop box, before clipping)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    source: Path | None = None
    # (N, M, M, C) uint8 mouth-region crops (lower third of the face box), when asked for
    mouths: np.ndarray | None = None
    detected: np.ndarray | None = None  # (N,) bool, True where the detector itself found the face

    @property
    def coverage(self) -> float:
        """Share of frames with a face (0 when the clip has no frames)."""
        return float(self.mask.mean()) if len(self.mask) else 0.0
