"""Batch adaptation: a batch's voice answers re-read with the batch as their reference.

A single clip cannot say which part of its voice statistics is the emotion and which is the
microphone, the room, the language or the speaker; a batch of clips from one source can: its
mean is that source's offset. The shipped voice model carries a second head trained for this
(:mod:`esva.model.pooled_voice`, "Batch adaptation"): leave-one-corpus-out it raises the
weighted F1 on corpora it never heard from 0.36 to about 0.47 (``results/generalise.md``).

``esva predict --adapt`` on many files (:mod:`esva.apps.batch`) keeps each clip's pooled voice
statistics in its row; when the batch holds at least the model's ``min_clips`` clips with a
voice, :func:`adapt_rows` replaces every such clip's voice distribution by the adapted head's,
fuses it again with the clip's other experts by the same rule
(:func:`esva.apps.fused.pool_experts`),
and applies the adapted head's calibrated threshold. The rows say so (``adapted``).

It is transductive: a clip's answer depends on the other clips of the batch. It assumes the
batch comes from one source (one corpus, one recording set-up) and spans the emotions: the
batch mean must be the source's offset, not an emotion. A batch of one or two emotions (a
folder sorted by label) breaks that and scores far below the clips read alone
(``results/generalise.md``), and no statistic of the batch tells the two cases apart reliably:
so it is opt-in (``--adapt``), never automatic. Only the whole-clip answer is adapted; the
timeline windows stay as the clip alone gave them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def encode_statistics(statistics: np.ndarray) -> str:
    """A clip's statistics as text for a JSON row (float32, base64)."""
    return base64.b64encode(np.asarray(statistics, np.float32).tobytes()).decode("ascii")


def decode_statistics(text: str, size: int) -> np.ndarray | None:
    """The statistics :func:`encode_statistics` wrote; None when the text is not ``size``
    finite float32 values (a row from another model, or a damaged side file)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, AttributeError):
        return None
    if len(raw) != 4 * size:
        return None
    x = np.frombuffer(raw, np.float32)
    return x if np.isfinite(x).all() else None


def adaptation_inputs(pred: Any) -> dict[str, Any]:
    """What a batch row keeps of a prediction so that :func:`adapt_rows` can answer again:
    the voice statistics, each expert's distribution over the output classes and presence,
    and whether the answer was confident apart from the calibrated threshold."""
    if getattr(pred, "voice_statistics", None) is None:
        return {}
    per_modality = pred.per_modality or {}
    thresholded = any(f.startswith("uncertain:") for f in pred.flags)
    return {
        "voice_statistics": encode_statistics(pred.voice_statistics),
        "experts_in": {
            name: {"probabilities": list(m["probabilities"].values()), "presence": m["presence"]}
            for name, m in per_modality.items()
        },
        "confident_before_threshold": bool(pred.confident or thresholded),
    }


@dataclass
class Adaptation:
    """What :func:`adapt_rows` did: how many clips, and why not when it did not."""

    clips: int = 0
    skipped: str | None = None  # the reason, when the batch was not adapted


def voice_model_of(model_dir: str | Path | None) -> tuple[Any, Any]:
    """``(voice model, fusion spec or None)`` of a model folder (None: the shipped default)."""
    from esva.fusion.spec import load_fusion
    from esva.model.pooled_voice import load_model

    if model_dir is None:
        from esva.assets import default_model_dir

        model_dir = default_model_dir(verify=False)
    return load_model(model_dir), load_fusion(model_dir)


def _experts_in(row: dict[str, Any], n_classes: int) -> dict[str, tuple[np.ndarray, float]]:
    """A row's experts (distribution over the output classes, presence); ValueError when the
    row does not hold them in that shape (a row written by another version)."""
    out = {}
    for name, e in (row.get("experts_in") or {}).items():
        p = np.asarray(e["probabilities"], np.float64)
        q = float(e["presence"])
        if p.shape != (n_classes,) or not np.isfinite(p).all() or not np.isfinite(q):
            raise ValueError(f"bad expert {name!r}")
        out[name] = (p, q)
    return out


def adapt_rows(rows: dict[str, dict[str, Any]], model: Any, fusion: Any = None) -> Adaptation:
    """Adapt the voice of ``rows`` (batch rows, changed in place) to the batch (module doc);
    ``model``: the batch's voice model, ``fusion``: its fusion spec (None: not fused). A row
    without readable inputs (an error row, an audio-less clip, a row from another version)
    is left as it is and does not count towards the batch."""
    import torch

    from esva.apps.fused import pool_experts, tempered
    from esva.fusion.label_spaces import to_target

    if not getattr(model, "adaptable", False):
        return Adaptation(skipped="the voice model has no batch-adapted head")
    settings = model.config.adaptation
    voice_classes = list(model.config.classes)
    classes = voice_classes if fusion is None else list(fusion.classes)
    keys, stats, inputs = [], [], []
    for key, row in rows.items():
        x = decode_statistics(row.get("voice_statistics") or "", model.config.n_features)
        if row.get("error") or x is None or len(row.get("probabilities") or []) != len(classes):
            continue
        try:
            experts = _experts_in(row, len(classes)) if fusion is not None else {}
        except (KeyError, TypeError, ValueError):
            continue
        if fusion is not None and "voice" not in experts:
            continue
        keys.append(key)
        stats.append(x)
        inputs.append(experts)
    if len(keys) < settings["min_clips"]:
        return Adaptation(
            skipped=f"{len(keys)} clip(s) with a voice, fewer than the {settings['min_clips']} "
            "batch adaptation needs"
        )
    with torch.no_grad():
        voice = model.adapted_probabilities(torch.from_numpy(np.stack(stats))).numpy()
    for key, p, experts in zip(keys, voice.astype(np.float64), inputs, strict=True):
        row = rows[key]
        labels: dict[str, str] = {}
        if fusion is None:
            probs = p
        else:
            mapped = {n: e[0] for n, e in experts.items()}
            # as fuse(): temper the voice by fusion.json, then map it to the output classes
            mapped["voice"] = to_target(
                tempered(p, fusion.experts["voice"].temperature), voice_classes, None, classes
            )
            presence = {n: e[1] for n, e in experts.items()}
            probs, weights, confidence = pool_experts(fusion, mapped, presence)
            labels = {n: classes[int(np.argmax(m))] for n, m in mapped.items()}
            row["voice_adapted"] = [float(v) for v in mapped["voice"]]
            row["weights_adapted"] = {n: round(float(w), 4) for n, w in weights.items()}
            row["confidence_adapted"] = {n: round(float(c), 4) for n, c in confidence.items()}
        top = float(np.max(probs))
        row.update(
            discrete=classes[int(np.argmax(probs))],
            probabilities=[float(v) for v in probs],
            confident=bool(row.get("confident_before_threshold", True))
            and top >= settings["threshold"],
            adapted=True,
        )
        if labels:
            row["experts"] = {**(row.get("experts") or {}), **labels}
    return Adaptation(clips=len(keys))


ADAPTED = "adapted: the voice was read against a batch of {n} clips (esva.apps.adapt)"
UNCERTAIN_ADAPTED = (
    "uncertain: top probability {top:.2f} is below the batch-adapted head's calibrated "
    "threshold {threshold:.2f}"
)


def adapt_results(results: list[Any], model: Any, fusion: Any = None) -> list[Any]:
    """:func:`adapt_rows` for typed results (``EmotionResult``): new results, each with the
    ``adapted`` flag, the adapted voice in ``per_modality`` and the adapted head's threshold
    deciding ``confident``; the same results when the batch was not adapted."""
    from dataclasses import replace

    rows = {
        str(i): {
            "probabilities": list(r.probabilities.values()),
            "error": "",
            "confident": r.confident,
            "experts": {},
            **adaptation_inputs(r),
        }
        for i, r in enumerate(results)
    }
    done = adapt_rows(rows, model, fusion)
    if not done.clips:
        return results
    threshold = model.config.adaptation["threshold"]
    out = []
    for i, r in enumerate(results):
        row = rows[str(i)]
        if not row.get("adapted"):
            out.append(r)
            continue
        classes = list(r.probabilities)
        flags = [f for f in r.flags if not f.startswith("uncertain:")]
        flags.append(ADAPTED.format(n=done.clips))
        top = max(row["probabilities"])
        if row["confident_before_threshold"] and not row["confident"]:
            flags.append(UNCERTAIN_ADAPTED.format(top=top, threshold=threshold))
        per_modality = r.per_modality
        if per_modality and "voice_adapted" in row:
            per_modality = {n: dict(m) for n, m in per_modality.items()}
            for name, entry in per_modality.items():
                entry["weight"] = row["weights_adapted"][name]
                entry["confidence"] = row["confidence_adapted"][name]
            voice = per_modality["voice"]
            voice["probabilities"] = dict(zip(classes, row["voice_adapted"], strict=True))
            voice["label"] = row["experts"]["voice"]
        out.append(
            replace(
                r,
                label=row["discrete"],
                probabilities=dict(zip(classes, row["probabilities"], strict=True)),
                confident=row["confident"],
                flags=flags,
                per_modality=per_modality,
            )
        )
    return out


__all__ = [
    "ADAPTED",
    "Adaptation",
    "adapt_results",
    "adapt_rows",
    "adaptation_inputs",
    "decode_statistics",
    "encode_statistics",
    "voice_model_of",
]
