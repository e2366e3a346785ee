"""The fused default: the folder's voice model and the face expert, combined per clip and window.

:class:`esva.apps.inference.Recognizer` calls :func:`fuse` when its model folder holds
``fusion.json`` (:mod:`esva.fusion.spec`). The experts read the clip's one analysis
(:class:`esva.extract.clip.ClipAnalysis`): the voice model its feature stream, the face expert
the detected frames of the clip face track that the audio-video offset also reads
(:func:`esva.media.track.track_clip_face`: grey 64 px crops of every decoded frame, framed as
the answer's ``extraction["face_track"]`` records), so a video is decoded once for both. Each
expert's calibrated distribution is mapped to the output classes
(:mod:`esva.fusion.label_spaces`), weighted by its reliability on this clip (face coverage;
active-speech share by an energy VAD; confidence) and pooled log-linearly
(:mod:`esva.fusion.reliability`). The same rule runs per timeline window.

Any subset works: an audio file -> voice only; a video with sound -> fused; a silent video ->
face only (flagged); a video in which no face is found -> voice only (flagged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esva.errors import EsvaError
from esva.fusion.label_spaces import target_table, to_target
from esva.fusion.reliability import (
    entropy_confidence,
    log_linear_pool,
    reliability_weights,
    speech_presence,
    vad_frames,
)
from esva.fusion.spec import FusionSpec

FACE_ONLY_NO_AUDIO = "face-only: the file has no audio track; the answer is from the face alone"
FACE_ONLY_NO_SPEECH = "face-only: no speech found in the audio (energy VAD); face alone"
VOICE_ONLY_NO_FACE = "voice-only: no face found in the video; the answer is from the voice alone"
NOTHING_RELIABLE = "no speech and no face found: the probabilities are uniform (not confident)"
MODALITY_OF = {"voice": "audio", "face": "visual"}
UNCERTAIN = (
    "uncertain: top probability {top:.2f} is below the calibrated threshold {threshold:.2f} "
    "(fusion.json confidence_threshold)"
)


def calibrated_confidence(probs: np.ndarray, spec: FusionSpec) -> tuple[bool, str | None]:
    """The calibrated rule for ``confident`` (fusion.json ``confidence_threshold``, chosen on
    out-of-corpus validation): the top probability must reach the threshold. Returns the
    verdict and, when it fails, the flag that says why."""
    threshold = spec.confidence_threshold
    top = float(np.max(probs))
    if threshold is None or top >= threshold:
        return True, None
    return False, UNCERTAIN.format(top=top, threshold=threshold)


@dataclass
class ExpertOutput:
    """One expert on one clip: its distribution in its own classes and how present it was."""

    classes: list[str]
    probs: np.ndarray  # (C_expert,) whole clip
    presence: float  # q in [0, 1]
    # (start_s, end_s) -> (C_expert,) probs and presence, per timeline window
    windows: list[tuple[np.ndarray, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # coverage, peak time, speech share, ...


def tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: an expert's calibration temperature applied to probabilities."""
    if temperature == 1.0:
        return np.asarray(p, np.float64)
    logp = np.log(np.clip(np.asarray(p, np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=-1, keepdims=True)


def voice_presence(audio, span: tuple[float, float], windows: list[tuple[float, float]], full):
    """Active-speech share of the clip span (and of each window, clip-relative times)."""
    if audio is None or not len(audio.samples):
        return 0.0, 0.0, [0.0] * len(windows)
    times, active = vad_frames(audio.samples, audio.sample_rate)
    times = times + audio.start_s - span[0]  # clip-relative, like the windows
    hop = times[1] - times[0] if len(times) > 1 else 0.01
    length = max(span[1] - span[0], 1e-9)
    share = float(active.sum() * hop / length)
    per_window = []
    for t0, t1 in windows:
        inside = (times >= t0) & (times < t1)
        per_window.append(float(active[inside].sum() * hop / max(t1 - t0, 1e-9)))
    return share, speech_presence(share, full), [speech_presence(s, full) for s in per_window]


def expert_frames(track) -> np.ndarray:
    """The track frames the face expert reads: those where the detector itself found the face
    (the sync track detects every 3rd frame and interpolates the boxes between), so the expert
    sees ~10 expression samples a second, each on a detected box; all tracked frames when the
    track does not say which were detected."""
    mask = np.asarray(track.mask, bool)
    detected = getattr(track, "detected", None)
    if detected is not None and len(detected) == len(mask) and (mask & detected).any():
        return mask & np.asarray(detected, bool)
    return mask


def face_expert_output(
    encoder, track, coverage: float, origin: float, windows: list[tuple[float, float]]
) -> ExpertOutput | None:
    """The face expert on the track's crops: pooled clip distribution and per-window ones.

    The expert reads the detected frames (:func:`expert_frames`); presence is the face
    coverage of the clip (of each window: its share of tracked frames).
    """
    from esva.encoders.face_expert import pool_clip
    from esva.media.types import FaceTrack

    if track is None or not np.asarray(track.mask).any():
        return None
    mask = np.asarray(track.mask, bool)
    keep = expert_frames(track)
    times = np.asarray(track.timestamps_s, np.float64)
    sub = FaceTrack(np.asarray(track.crops)[keep], times[keep], np.ones(int(keep.sum()), bool))
    frame_probs = encoder.probabilities(encoder.encode(sub).features)  # (K, C) calibrated
    t_keep = times[keep]
    clip = pool_clip(frame_probs, t_keep)
    rel_all, rel = times - origin, t_keep - origin
    n_classes = frame_probs.shape[1]
    per_window = []
    for t0, t1 in windows:
        inside = (rel >= t0) & (rel < t1)
        tracked = mask[(rel_all >= t0) & (rel_all < t1)]
        if not inside.any() or not tracked.any():
            per_window.append((np.full(n_classes, 1.0 / n_classes), 0.0))
            continue
        w = pool_clip(frame_probs[inside], t_keep[inside])
        per_window.append((w.probabilities, float(tracked.mean())))
    return ExpertOutput(
        classes=list(encoder.labels),
        probs=clip.probabilities,
        presence=float(np.clip(coverage, 0.0, 1.0)),
        windows=per_window,
        info={
            "peak_time_s": round(float(clip.peak_time_s), 3),
            "coverage": round(float(coverage), 4),
            "frames": len(mask),
            "frames_with_face": int(mask.sum()),
            "frames_read": int(keep.sum()),
        },
    )


def _dist(classes, p) -> dict[str, float]:
    return {c: float(v) for c, v in zip(classes, p, strict=True)}


@dataclass
class Fused:
    """What :func:`fuse` returns to the recognizer."""

    probabilities: np.ndarray  # (C,) over spec.classes
    per_modality: dict[str, dict[str, Any]]
    timeline: list[dict]
    used: list[str]  # experts with weight > 0
    flags: list[str]
    confident: bool
    peak_face_time_s: float | None


def pool_experts(
    spec: FusionSpec, mapped: dict[str, np.ndarray], presence: dict[str, float]
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """The clip rule: each expert's distribution over the output classes, weighted by its
    presence and confidence, pooled log-linearly. Returns (fused, weights, confidences)."""
    conf = {name: entropy_confidence(p) for name, p in mapped.items()}
    weights = reliability_weights(presence, conf, spec.base, spec.confidence_power)
    return log_linear_pool(mapped, weights), weights, conf


def fuse(spec: FusionSpec, experts: dict[str, ExpertOutput], windows) -> Fused:
    """Map, weigh and pool the experts' clip and window distributions (module doc)."""
    classes = list(spec.classes)
    if not experts:
        raise EsvaError("no usable audio, face or text in the clip")
    mapped, conf, raw = {}, {}, {}
    for name, e in experts.items():
        table = target_table(e.classes, classes)
        t = spec.experts[name].temperature
        raw[name] = tempered(e.probs, t)
        mapped[name] = to_target(raw[name], e.classes, table, classes)
    presence = {n: e.presence for n, e in experts.items()}
    fused, weights, conf = pool_experts(spec, mapped, presence)
    flags: list[str] = []
    if not any(w > 0 for w in weights.values()):
        flags.append(NOTHING_RELIABLE)
    per_modality: dict[str, dict[str, Any]] = {}
    for name, e in experts.items():
        entry: dict[str, Any] = {
            "label": classes[int(np.argmax(mapped[name]))],
            "probabilities": _dist(classes, mapped[name]),
            "weight": round(float(weights[name]), 4),
            "presence": round(float(e.presence), 4),
            "confidence": round(float(conf[name]), 4),
        }
        if list(e.classes) != classes:
            entry["raw"] = _dist(e.classes, raw[name])
        entry.update(e.info)
        per_modality[name] = entry
    timeline = []
    for k, (t0, t1) in enumerate(windows):
        wm, wq, wc = {}, {}, {}
        for name, e in experts.items():
            if k >= len(e.windows):
                continue
            p, q = e.windows[k]
            wm[name] = to_target(tempered(p, spec.experts[name].temperature), e.classes, None,
                                 classes)  # fmt: skip
            wq[name], wc[name] = q, entropy_confidence(wm[name])
        if not wm:
            continue
        ww = reliability_weights(wq, wc, spec.base, spec.confidence_power)
        p = log_linear_pool(wm, ww)
        timeline.append(
            {
                "start_s": float(t0),
                "end_s": float(t1),
                "label": classes[int(np.argmax(p))],
                "probabilities": _dist(classes, p),
                "per_modality": {
                    n: {"probabilities": _dist(classes, wm[n]), "weight": round(ww[n], 4)}
                    for n in wm
                },
            }
        )
    face = experts.get("face")
    return Fused(
        probabilities=fused,
        per_modality=per_modality,
        timeline=timeline,
        used=[n for n in experts if weights[n] > 0],
        flags=flags,
        confident=any(w > 0 for w in weights.values()),
        peak_face_time_s=None if face is None else face.info.get("peak_time_s"),
    )


def window_grid(duration: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """The timeline's windows over ``duration`` s (one window when the clip is shorter)."""
    import math

    if duration <= window_s:
        return [(0.0, max(duration, 0.0))]
    n = math.floor((duration - window_s) / hop_s) + 1
    return [(k * hop_s, k * hop_s + window_s) for k in range(n)]


__all__ = [
    "FACE_ONLY_NO_AUDIO",
    "FACE_ONLY_NO_SPEECH",
    "UNCERTAIN",
    "VOICE_ONLY_NO_FACE",
    "ExpertOutput",
    "Fused",
    "calibrated_confidence",
    "face_expert_output",
    "fuse",
    "voice_presence",
    "window_grid",
]
