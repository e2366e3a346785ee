"""Raw media in: decoded audio at 16 kHz, video frames with real timestamps, face tracks (and a
clip's one face track with its framing, :mod:`esva.media.track`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from esva.media.types import AudioClip, FaceTrack, VideoFrames

if TYPE_CHECKING:
    from esva.media.decode import MediaInfo, iter_frames, load_audio, load_video, probe
    from esva.media.faces import FaceFrame, FaceTrackerConfig, iter_faces, track_faces
    from esva.media.track import FaceTrackSettings, track_clip_face

# Loaded on first use: `esva predict` on an audio file needs neither PyAV's video side nor the
# face detector (OpenCV, the MTCNN nets), and importing esva.media.types must not pull them in.
_LAZY = {
    **dict.fromkeys(("MediaInfo", "iter_frames", "load_audio", "load_video", "probe"), "decode"),
    **dict.fromkeys(("FaceFrame", "FaceTrackerConfig", "iter_faces", "track_faces"), "faces"),
    **dict.fromkeys(("FaceTrackSettings", "track_clip_face"), "track"),
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"esva.media.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'esva.media' has no attribute {name!r}")


__all__ = [
    "AudioClip",
    "FaceFrame",
    "FaceTrack",
    "FaceTrackSettings",
    "FaceTrackerConfig",
    "MediaInfo",
    "VideoFrames",
    "iter_faces",
    "iter_frames",
    "load_audio",
    "load_video",
    "probe",
    "track_clip_face",
    "track_faces",
]
