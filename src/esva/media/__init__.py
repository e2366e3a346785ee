"""Raw media in: decoded audio at 16 kHz, video frames with real timestamps, face tracks."""

from esva.media.types import AudioClip, FaceTrack, VideoFrames

__all__ = ["AudioClip", "FaceTrack", "VideoFrames"]
