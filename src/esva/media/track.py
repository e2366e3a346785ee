"""A clip's one face track: how it is framed, how it is made, and its frames on a time grid.

When a model has no visual encoder of its own (the shipped default's voice model), the face in a
video is tracked once, through every decoded frame at its real timestamp, with grey face and
mouth crops (:func:`track_clip_face`, framed by :class:`FaceTrackSettings`). That one track is
what the sync heads read for the audio-video offset (``esva predict``, ``esva align``) and what
the fused default's face expert reads (its detected frames). MTCNN is the default detector: the
talking-head clips this is meant for are often in profile, where OpenCV's frontal Haar cascade
loses the face (measured on the ``av_sync`` clips: on a profile PC-AVS clip Haar found the face
in 65-68 % of the frames, MTCNN in 100 %).

A model with a visual encoder tracks faces inside its extraction instead (at its recorded fps and
detector, :mod:`esva.extract.pipeline`); :func:`tracker_record` describes either framing in the
same words, for ``extraction.json`` and the answer's ``extraction`` settings.

OpenCV and the detectors are imported only when a track is made: an audio file never loads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esva.errors import EsvaError
from esva.media.types import FaceTrack, VideoFrames

if TYPE_CHECKING:
    from esva.media.faces import FaceTrackerConfig

EVERY_FRAME = "every decoded frame"  # what a clip face track samples


@dataclass
class FaceTrackSettings:
    """How a clip's face track is framed (see :class:`esva.media.faces.FaceTrackerConfig` for
    the tracker's other settings, whose defaults apply and are recorded by :meth:`record`)."""

    detector: str = "mtcnn"  # "mtcnn" (profile-robust) or "haar" (faster, frontal only)
    min_face: float = 0.1  # smallest face side, as a fraction of the frame's shorter side
    max_side: int = 640  # frames are downscaled so their longer side is at most this
    face_size: int = 64  # grey face crops (the sync heads' "face" pixels, the face expert's input)
    mouth_size: int = 32  # grey mouth crops (the sync heads' default visual features)

    def tracker(self) -> FaceTrackerConfig:
        from esva.media.faces import FaceTrackerConfig

        return FaceTrackerConfig(
            detector=self.detector,
            min_face=self.min_face,
            size=self.face_size,
            grey=True,
            mouth_size=self.mouth_size,
        )

    def record(self) -> dict[str, Any]:
        """Every setting of the track this makes (the tracker's defaults included)."""
        return tracker_record(self.tracker(), EVERY_FRAME, self.max_side)

    @classmethod
    def from_dict(cls, data: Any, where: str | Path | None = None) -> FaceTrackSettings:
        """Settings read from ``extraction.json``'s ``face_track`` (a one-line error names a
        key that is unknown or of the wrong type); missing keys keep their defaults."""
        if not isinstance(data, dict):
            raise EsvaError(f"face_track must be an object, got {type(data).__name__}", where)
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in data.items() if k in known})
        if out.detector not in ("mtcnn", "haar"):
            raise EsvaError(f"face_track: unknown detector {out.detector!r} (mtcnn or haar)", where)
        for name, value in asdict(out).items():
            if name == "detector":
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            if name != "min_face":
                ok = ok and isinstance(value, int)
            if not ok or (name == "min_face" and value > 1):
                raise EsvaError(
                    f"face_track: {name} must be a positive number, got {value!r}", where
                )
        # A record (:meth:`record`) also names the tracker's fixed settings: they must be the
        # ones this esva tracks with, or the crops would differ from those the model read.
        fixed = {k: v for k, v in data.items() if k not in known}
        expected = out.record() if fixed else {}
        for key, value in fixed.items():
            if key not in expected:
                raise EsvaError(f"face_track: unknown setting {key!r}", where)
            if _plain(value) != _plain(expected[key]):
                raise EsvaError(
                    f"face_track: {key} is {value!r}, this esva tracks with {expected[key]!r}",
                    where,
                )
        return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def tracker_record(
    config: FaceTrackerConfig, frames: str, max_side: int | None = None
) -> dict[str, Any]:
    """A face tracker's framing as JSON: the frames it reads, the detector and every setting
    that shapes the crops."""
    detector = config.detector if isinstance(config.detector, str) else "custom"
    return {
        "frames": frames,
        "max_side": max_side,
        "detector": detector,
        "min_face": config.min_face,
        "face_size": config.size,
        "mouth_size": config.mouth_size,
        "grey": config.grey,
        "margin": config.margin,
        "detect_every": config.detect_every,
        "detect_side": config.detect_side,
        "roi": config.roi,
        "smooth": config.smooth,
        "iou_min": config.iou_min,
        "max_gap_s": config.max_gap_s,
        "hold_s": config.hold_s,
        "mtcnn_thresholds": list(config.mtcnn_thresholds) if detector == "mtcnn" else None,
    }


def track_clip_face(
    video: Path | VideoFrames, settings: FaceTrackSettings | None = None
) -> FaceTrack:
    """The main face through every decoded frame of ``video`` (a file, or frames in memory:
    :mod:`esva.media.arrays`), framed by ``settings``."""
    import torch

    from esva.media import decode  # looked up per call: a test counts the decodes through it
    from esva.media.faces import track_faces

    settings = settings or FaceTrackSettings()
    # MTCNN's nets are tiny: torch's intra-op threads cost more in synchronisation than they
    # gain (measured on a 3.3 s RAVDESS clip on 2 busy cores: 9 s with 1 thread, 31 s with 2),
    # so tracking runs on one thread and the caller's setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(video, VideoFrames):
            from esva.media.arrays import iter_array_frames

            frames = iter_array_frames(video, max_side=settings.max_side)
            return track_faces(frames, settings.tracker(), video.source)
        frames = decode.iter_frames(video, max_side=settings.max_side)
        return track_faces(frames, settings.tracker(), video)
    finally:
        torch.set_num_threads(threads)


def to_grid(
    values: np.ndarray, times: np.ndarray, mask: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3 by timestamps: linear interpolation of (N, D) frames at ``times`` onto ``grid``.

    :func:`esva.align.resample_sequence` assumes a constant frame rate from frame 0; video
    frames carry their own (possibly irregular) timestamps, so interpolation is done between the
    two decoded frames that surround each grid instant. A grid frame is valid when both exist
    and have a face (or the grid instant falls on a frame with a face).
    """
    n = len(times)
    out = np.zeros((len(grid), values.shape[1]), np.float32)
    valid = np.zeros(len(grid), bool)
    if n == 0:
        return out, valid
    if n == 1:
        hit = np.abs(grid - times[0]) < 1e-6
        out[hit], valid[hit] = values[0], bool(mask[0])
        return out, valid
    hi = np.searchsorted(times, grid, side="left").clip(1, n - 1)
    lo = hi - 1
    span = np.maximum(times[hi] - times[lo], 1e-9)
    w = ((grid - times[lo]) / span).astype(np.float32)
    inside = (grid >= times[0] - 1e-6) & (grid <= times[-1] + 1e-6)
    w = w.clip(0.0, 1.0)
    # A neighbour without a face only matters if it has weight (a grid instant on a frame's
    # own time needs only that frame).
    valid = inside & (mask[lo] | (w > 1 - 1e-6)) & (mask[hi] | (w < 1e-6))
    w = w[:, None]
    out = (1 - w) * values[lo] + w * values[hi]
    out[~valid] = 0.0
    return out.astype(np.float32), valid


__all__ = ["EVERY_FRAME", "FaceTrackSettings", "to_grid", "track_clip_face", "tracker_record"]
