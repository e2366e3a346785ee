"""Cues measured on encoder streams: what a face and a voice do over one clip, in numbers.

Read at answer time (``esva explain``) and when building training captions
(:mod:`esva.recipes.captions`), so that both measure alike:

- :func:`face_cues`: a ``fer-cnn`` stream's 7 FER expression probabilities per frame -> the
  dominant expression in each third of the clip (the trajectory), the most expressive frame (the
  peak: the frame least likely to be neutral) and its expression (:class:`FaceCues`);
- :func:`voice_cues`: a ``prosody`` stream -> median F0 (Hz), F0 range (semitones between the
  10th and 90th percentile of voiced frames), loudness (median frame energy of the active frames,
  dBFS), a speech-rate proxy (energy peaks on voiced frames per second of the active span: the
  syllable nuclei of de Jong & Wempe 2009) and the harmonics-to-noise ratio (:class:`VoiceCues`;
  its ``*_rel`` fields are filled against a speaker's median clip by
  :func:`esva.recipes.captions.relate_to_speakers`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# fer-cnn's expression classes, in the order of its 7 logit columns (after 128 embedding dims).
FACE_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# prosody's columns used here (see esva.encoders.prosody.COLUMNS).
LOG2_F0, VOICED, ENERGY_DB, HNR_DB = 1, 2, 6, 9


@dataclass
class FaceCues:
    """What the face does over the clip, from fer-cnn's expression probabilities."""

    coverage: float  # share of sampled frames with a face
    mean: dict[str, float]  # mean probability of each expression over the face frames
    trajectory: list[str]  # dominant expression in the first, middle and last third
    peak_frame: int  # index (in the stream) of the most expressive frame
    peak_time_s: float
    peak_expression: str  # its most likely non-neutral expression
    peak_probability: float


@dataclass
class VoiceCues:
    """What the voice does, from the prosody stream; ``*_rel`` are against the speaker."""

    active_s: float  # span from the first to the last loud frame
    voiced_fraction: float  # of the active span
    f0_hz: float | None  # median F0 of voiced frames
    f0_range_st: float | None  # 10th-90th percentile span of F0, semitones
    loudness_db: float  # median energy of the active frames, dBFS
    rate_per_s: float  # syllable-nucleus proxy per second of the active span
    hnr_db: float | None
    pitch_rel_st: float | None = None  # F0 vs the speaker's median clip, semitones
    loudness_rel_db: float | None = None
    rate_rel: float | None = None  # ratio
    range_rel: float | None = None  # ratio


def face_cues(
    features: np.ndarray, mask: np.ndarray, fps: float, start_s: float = 0.0
) -> FaceCues | None:
    """Face cues from a fer-cnn stream ``(T, 135)``; None when no frame has a face."""
    from esva.encoders.fer_cnn import FerCnnEncoder

    mask = np.asarray(mask, bool)
    if features.ndim != 2 or features.shape[1] < len(FACE_LABELS) or not mask.any():
        return None
    probs = FerCnnEncoder.probabilities(features[mask])
    index = np.flatnonzero(mask)
    neutral = FACE_LABELS.index("neutral")
    thirds = [p for p in np.array_split(probs, 3) if len(p)]
    trajectory = [FACE_LABELS[int(p.mean(axis=0).argmax())] for p in thirds]
    peak = int((1.0 - probs[:, neutral]).argmax())
    emotional = probs[peak].copy()
    emotional[neutral] = -1.0
    expression = int(emotional.argmax())
    return FaceCues(
        coverage=float(mask.mean()),
        mean={lab: float(v) for lab, v in zip(FACE_LABELS, probs.mean(axis=0), strict=True)},
        trajectory=trajectory,
        peak_frame=int(index[peak]),
        peak_time_s=float(start_s + index[peak] / fps) if fps > 0 else float(start_s),
        peak_expression=FACE_LABELS[expression],
        peak_probability=float(probs[peak, expression]),
    )


def voice_cues(features: np.ndarray, mask: np.ndarray, fps: float) -> VoiceCues | None:
    """Voice cues from a prosody stream ``(T, 10)`` at ``fps``; None without a loud frame."""
    from scipy.signal import find_peaks

    mask = np.asarray(mask, bool)
    if features.ndim != 2 or features.shape[1] <= HNR_DB or not mask.any() or fps <= 0:
        return None
    energy = np.where(mask, features[:, ENERGY_DB], -100.0)
    # "Active" = within 25 dB of the clip's loud frames: leading and trailing silence (a second
    # or more in RAVDESS) would otherwise halve the speech rate and drag the loudness down.
    loud = energy > np.percentile(energy[mask], 95) - 25.0
    if not loud.any():
        return None
    first, last = np.flatnonzero(loud)[[0, -1]]
    span = slice(first, last + 1)
    active_s = (last - first + 1) / fps
    voiced = mask & (features[:, VOICED] > 0.5)
    f0 = 100.0 * np.exp2(features[voiced, LOG2_F0])
    f0_hz = float(np.median(f0)) if len(f0) >= 5 else None
    f0_range = float(12 * np.log2(np.percentile(f0, 90) / np.percentile(f0, 10))) if f0_hz else None
    # Syllable nuclei: peaks of the (3-frame smoothed) energy that stand 2 dB above their
    # surroundings, on voiced loud frames, at least 80 ms apart.
    smooth = np.convolve(energy, np.ones(3) / 3, mode="same")
    peaks, _ = find_peaks(smooth, prominence=2.0, distance=max(1, round(0.08 * fps)))
    nuclei = [p for p in peaks if voiced[p] and loud[p]]
    hnr = features[voiced, HNR_DB]
    return VoiceCues(
        active_s=float(active_s),
        voiced_fraction=float(voiced[span].mean()),
        f0_hz=f0_hz,
        f0_range_st=f0_range,
        loudness_db=float(np.median(energy[span][loud[span]])),
        rate_per_s=float(len(nuclei) / active_s),
        hnr_db=float(hnr.mean()) if len(hnr) else None,
    )


__all__ = [
    "ENERGY_DB",
    "FACE_LABELS",
    "HNR_DB",
    "LOG2_F0",
    "VOICED",
    "FaceCues",
    "VoiceCues",
    "face_cues",
    "voice_cues",
]
