"""τ* of one clip in the sync space, with the flags that say when not to trust it.

:func:`align_media` projects a clip's log-mel audio and face/mouth pixels into the shipped sync
space (:mod:`esva.sync.space`) and runs the paper's Eq. 4-6 and 8-9 on them
(:func:`esva.align.estimate_offset`), sub-frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from esva.align.offsets import OffsetEstimate
from esva.media.decode import display_name
from esva.sync.clip_media import ClipMedia
from esva.sync.space import SyncFeatures, SyncSpace, load_sync_space

MIN_FACE_COVERAGE = 0.2  # below this share of frames with a face, the estimate is not trusted
SILENCE_PEAK = 1e-4  # audio whose samples never exceed this (-80 dBFS) is digital silence
# Below this confidence the peak of C(τ) is flagged: measured with held-out heads on the 36 real
# clips, in-sync clips gave 0.07-0.37 (median 0.20), the same videos with another clip's audio
# 0.03-0.35 (median 0.09); the threshold flags 2 of 36 real pairings and 22 of 36 unrelated ones.
MIN_CONFIDENCE = 0.1
# The largest search range esva accepts (``--max-offset-ms``): the sync heads were trained on
# shifts within ±500 ms; far beyond a few seconds the correlation is over a sliver of the clip.
MAX_OFFSET_CAP_MS = 5000.0
# The search is also limited to half the clip: at a shift of half the clip only half of the
# audio and video still overlap, and C(τ) past that is a peak over noise (a 1e9 ms range gave
# 2286 ms at confidence 0.72 on an in-sync clip). A larger request is clamped and flagged.
MAX_OFFSET_SHARE = 0.5
# Agreement of the local windows (Eq. 6) with the global τ*: share of windows within
# ±WINDOW_AGREE_MS. Measured on 6 in-sync pc-avs clips: 0.78-1.00 with MTCNN faces, 0.12-0.44
# with Haar faces (whose τ* was up to 140 ms off, unflagged at confidence 0.2); below
# MIN_WINDOW_AGREEMENT the estimate is flagged. Needs at least MIN_WINDOWS defined windows.
WINDOW_AGREE_MS = 80.0
MIN_WINDOW_AGREEMENT = 0.5
MIN_WINDOWS = 3


@dataclass
class ClipAlignConfig:
    """Options of :func:`align_media`: the search range and Eq. 4/8 geometry."""

    max_offset_ms: float = 500.0  # τ is searched in [-max, +max]
    window_s: float = 1.0  # local windows of Eq. 4
    hop_s: float = 0.5
    alpha: float = 1.0  # weight of the local distance D (Eq. 8)
    beta: float = 1.0  # weight of the global correlation C (Eq. 8)


@dataclass
class ClipAlignment:
    """The result of :func:`align_media` (``offset_ms`` > 0: the audio lags the video)."""

    file: str
    audio_file: str
    offset_ms: float
    confidence: float
    peak_z: float
    local_offsets_ms: list[float | None]  # per window; None where the window lacks data
    window_start_s: list[float]
    window_s: float
    fps: float  # the grid the estimate was made on
    max_offset_ms: float
    face_coverage: float
    flags: list[str] = field(default_factory=list)  # reasons not to trust the result
    estimate: OffsetEstimate | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the headline numbers, the windows and the C(τ) / L(τ) curves."""
        e = self.estimate
        curves = {}
        if e is not None:
            curves = {
                "taus_ms": _clean(-1000.0 * e.taus_s),  # as audio lags
                "xcorr": _clean(e.xcorr),
                "cost": _clean(e.cost),
            }
        out = {k: v for k, v in asdict(self).items() if k != "estimate"}
        out["offset_ms"] = round(self.offset_ms, 3) if math.isfinite(self.offset_ms) else None
        return {**out, **curves}


def _window_flags(
    local: list[float | None], lag_ms: float, duration_ms: float, config: ClipAlignConfig
) -> list[str]:
    """Flags from the local windows: too few to cross-check τ*, or disagreeing with it."""
    shown = [v for v in local if v is not None]
    if len(shown) < MIN_WINDOWS:
        return [
            f"clip too short for the {config.window_s:g}-s windows ({duration_ms / 1000:.1f} s, "
            f"{len(shown)} usable window(s)): the offset cannot be cross-checked"
        ]
    agree = sum(abs(v - lag_ms) <= WINDOW_AGREE_MS for v in shown) / len(shown)
    if agree < MIN_WINDOW_AGREEMENT:
        return [
            f"the local windows disagree with the offset (only {100 * agree:.0f} % within "
            f"±{WINDOW_AGREE_MS:.0f} ms): unreliable face track or speech; try --detector mtcnn"
        ]
    return []


def _clean(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, None for NaN (JSON has no NaN)."""
    return [None if not math.isfinite(float(v)) else round(float(v), 6) for v in values]


def estimate_from_features(
    feats: SyncFeatures, space: SyncSpace, config: ClipAlignConfig | None = None
) -> OffsetEstimate:
    """Project ``feats`` into the sync space and run Eq. 9 on them."""
    c = config or ClipAlignConfig()
    return space.estimate_offset(feats, c.max_offset_ms, c.window_s, c.hop_s, c.alpha, c.beta)


def _undefined_reason(media: ClipMedia) -> str:
    """Why no offset was measured although there is sound: the streams' spans really do not
    meet, or they do and the face track is too sparse there (a 1-fps video has no lip motion
    to follow)."""
    audio, t = media.audio, np.asarray(media.track.timestamps_s, np.float64)
    if len(t) and len(audio.samples):
        a0, a1 = audio.start_s, audio.start_s + audio.duration_s
        step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        if min(a1, float(t[-1]) + step) > max(a0, float(t[0])):
            faces = int(np.asarray(media.track.mask, bool)[(t >= a0 - step) & (t <= a1)].sum())
            if faces == 0:
                return "no face was found while the audio plays: the offset cannot be measured"
            fps = 1.0 / step if step > 0 else 0.0
            return (
                f"too few face frames to follow the lips ({faces} with a face, about "
                f"{fps:.2g} frames per second): the offset cannot be measured"
            )
    return "the audio and the face never overlap in time"


def align_media(
    media: ClipMedia, space: SyncSpace | None = None, config: ClipAlignConfig | None = None
) -> ClipAlignment:
    """τ*, its confidence and the per-window offsets of decoded ``media``."""
    config = config or ClipAlignConfig()
    space = space or load_sync_space()
    feats = space.features(media.audio, media.track)
    flags = []
    duration_ms = 1000.0 * len(feats) / feats.fps if feats.fps > 0 else 0.0
    limit_ms = max(MAX_OFFSET_SHARE * duration_ms, 1000.0 / max(feats.fps, 1.0))
    clamped = config.max_offset_ms > limit_ms
    if clamped:
        flags.append(
            f"search range clamped to ±{limit_ms:.0f} ms (half the {duration_ms / 1000:.1f}-s "
            f"clip; --max-offset-ms {config.max_offset_ms:g} asked)"
        )
        config = replace(config, max_offset_ms=limit_ms)
    est = estimate_from_features(feats, space, config)
    coverage = media.track.coverage
    samples = media.audio.samples
    silent = len(samples) == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK
    defined = est.defined and not silent
    if coverage < MIN_FACE_COVERAGE:
        flags.append(f"face found in only {100 * coverage:.0f} % of the frames")
    if silent:
        flags.append("the audio is silent: there is nothing to align")
    elif not est.defined:
        flags.append(_undefined_reason(media))
    elif est.confidence < MIN_CONFIDENCE:
        flags.append("no clear peak in C(τ): little speech or lip motion, or unrelated audio")
    edge = abs(abs(est.tau_s) * 1000.0 - config.max_offset_ms) < 1000.0 / feats.fps
    if defined and edge:
        flags.append(
            "the best offset is at the edge of the search range, which the clip's length limits"
            if clamped
            else "the best offset is at the edge of the search range; raise --max-offset-ms"
        )
    local = [
        None if silent or not math.isfinite(v) else round(-1000.0 * float(v), 3)
        for v in est.local_tau_s
    ]
    if defined:
        flags.extend(_window_flags(local, est.audio_lag_ms, duration_ms, config))
    return ClipAlignment(
        file=display_name(media.video_path),
        audio_file=display_name(media.audio_path),
        offset_ms=est.audio_lag_ms if defined else float("nan"),
        confidence=round(est.confidence, 4),
        peak_z=round(est.peak_z, 4),
        local_offsets_ms=local,
        window_start_s=[round(float(s) + feats.start_s, 3) for s in est.window_start_s],
        window_s=config.window_s,
        fps=feats.fps,
        max_offset_ms=config.max_offset_ms,
        face_coverage=round(coverage, 4),
        flags=flags,
        estimate=est,
    )
