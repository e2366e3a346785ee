"""Raw media in: decoded audio at 16 kHz, video frames with real timestamps, face tracks."""

from esva.media.decode import MediaInfo, iter_frames, load_audio, load_video, probe
from esva.media.faces import FaceFrame, FaceTrackerConfig, iter_faces, track_faces
from esva.media.types import AudioClip, FaceTrack, VideoFrames

__all__ = [
    "AudioClip",
    "FaceFrame",
    "FaceTrack",
    "FaceTrackerConfig",
    "MediaInfo",
    "VideoFrames",
    "iter_faces",
    "iter_frames",
    "load_audio",
    "load_video",
    "probe",
    "track_faces",
]
