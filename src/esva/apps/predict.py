"""``esva predict``: one media file -> emotion, probabilities, timeline and audio-video offset.

The model's ``config.encoders`` says which encoder produced each modality it was trained on
(e.g. ``{"audio": "whisper-tiny", "visual": "fer-cnn"}``); the same encoders run on the file,
the model sees the whole clip for the overall prediction, and sliding windows for the timeline.
A modality the file lacks (no face, no audio track) is reported as missing, and the prediction
is made from what is there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from esva.data.sources import AUDIO_SUFFIXES, ClipSource
from esva.data.streams import combine
from esva.encoders import encoder_names
from esva.errors import EsvaError
from esva.extract.pipeline import ExtractConfig, FeatureExtractor
from esva.io import atomic_path
from esva.model import ESVAModel
from esva.model.inputs import collate, modality_fps


@dataclass
class Prediction:
    file: str
    label: str
    probabilities: dict[str, float]
    offset_ms: float | None  # audio lag behind the video (positive = audio late); None w/o both
    offset_confidence: float | None
    modalities: list[str]  # streams the prediction used
    missing: list[str]  # modalities the model knows but the file did not give
    flags: list[str]  # extraction flags (no-face, silent, asr-transcript, ...)
    timeline: list[dict] = field(default_factory=list)  # per window: start_s, end_s, label, probs
    valence: float | None = None
    transcript: str | None = None
    model: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def extract_config_for(model: ESVAModel) -> ExtractConfig:
    """The extraction settings that reproduce the features a model was trained on."""
    known = encoder_names()  # names only: importing every encoder module costs seconds
    specs = model.config.encoders or {}
    parts: dict[str, list[str]] = {"audio": [], "visual": [], "text": []}
    for modality in model.config.modalities:
        spec = specs.get(modality)
        if not spec:
            raise EsvaError(f"the model does not record which encoder made its {modality} features")
        for name in spec.split("+"):
            if name not in known:
                raise EsvaError(
                    f"the model's {modality} features come from {name!r}, which is not an esva "
                    "encoder; score it on a feature store with `esva evaluate` instead"
                )
            parts[modality].append(name)
    return ExtractConfig(audio=parts["audio"], visual=parts["visual"], text=parts["text"])


def model_extractor(directory: str | Path, model) -> FeatureExtractor | None:
    """The feature extractor for ``model`` (loaded from ``directory``) honouring the folder's
    ``encoder_options.json``; None when there is none (esva.apps.predict's defaults then apply).

    ``predict_file(path, model, extractor=model_extractor(directory, model))`` is how to use the
    shipped model from Python: its Whisper features come from a chosen layer, not the last one.
    """

    from esva.assets import ENCODER_OPTIONS
    from esva.io import read_json

    path = Path(directory) / ENCODER_OPTIONS
    if not path.exists():
        return None
    options = read_json(path)
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise EsvaError("encoder options must map encoder names to option mappings", path)
    config = extract_config_for(model)
    config.encoder_options = options
    return FeatureExtractor(config)


def _items(
    model: ESVAModel, streams: dict, window_s: float, hop_s: float
) -> tuple[dict, list, float]:
    """The whole-clip item and the sliding-window items for the timeline."""
    cfg = model.config
    specs = cfg.encoders
    item: dict = {"name": "clip", "label": -1, "valence": None}
    for modality in cfg.modalities:
        names = specs[modality].split("+")
        if all(n in streams for n in names):
            x, m = combine([streams[n] for n in names], modality_fps(cfg, modality))
            if m.any():
                item[modality], item[f"{modality}_mask"] = x, m
    durations = [len(item[m]) / modality_fps(cfg, m) for m in ("audio", "visual") if m in item]
    duration = max(durations, default=0.0)
    windows = []
    if duration > window_s:
        n = math.floor((duration - window_s) / hop_s) + 1
        for k in range(n):
            t0, t1 = k * hop_s, k * hop_s + window_s
            win = {"name": f"w{k}", "label": -1, "valence": None, "start_s": t0, "end_s": t1}
            for m in cfg.modalities:
                if m not in item:
                    continue
                fps = modality_fps(cfg, m)
                if fps:
                    a, b = round(t0 * fps), round(t1 * fps)
                    x, mk = item[m][a:b], item[f"{m}_mask"][a:b]
                    if len(x) == 0 or not mk.any():
                        continue
                    win[m], win[f"{m}_mask"] = x, mk
                else:
                    win[m], win[f"{m}_mask"] = item[m], item[f"{m}_mask"]
            if any(m in win for m in cfg.modalities):
                windows.append(win)
    return item, windows, duration


def predict_file(
    path: str | Path,
    model: ESVAModel,
    audio: str | Path | None = None,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    extractor: FeatureExtractor | None = None,
    measure_offset: bool = True,
) -> Prediction:
    """Emotion, probabilities, a windowed timeline and the audio lag of one media file.

    The offset comes from the model's own alignment module when it reads both audio and video;
    for a model without a visual stream (like the shipped audio-only default) a video's offset is
    measured by the shipped sync heads instead (``esva align``), flagged as such.
    """
    path = Path(path)
    if not path.exists():
        raise EsvaError("file not found", path)
    if window_s <= 0 or hop_s <= 0:
        raise EsvaError("--window and --hop must be positive")
    cfg = model.config
    extractor = extractor or FeatureExtractor(extract_config_for(model))
    is_audio = path.suffix.lower() in AUDIO_SUFFIXES
    source = ClipSource(
        name=path.stem,
        video=None if is_audio else path,
        audio=Path(audio) if audio else (path if is_audio else None),
    )
    features = extractor.extract(source)
    item, windows, duration = _items(model, features.streams, window_s, hop_s)
    if not any(m in item for m in cfg.modalities):
        raise EsvaError("none of the model's modalities could be extracted from the file", path)
    model.eval()
    with torch.no_grad():
        out = model({k: v for k, v in collate([item], cfg.modalities).items() if k != "name"})
        probs = out.probabilities[0].numpy()
        timeline = []
        if windows:
            wout = model({k: v for k, v in collate(windows, cfg.modalities).items() if k != "name"})
            for win, p in zip(windows, wout.probabilities.numpy(), strict=True):
                timeline.append(
                    {
                        "start_s": win["start_s"],
                        "end_s": win["end_s"],
                        "label": cfg.classes[int(p.argmax())],
                        "probabilities": dict(zip(cfg.classes, map(float, p), strict=True)),
                    }
                )
        else:
            timeline.append(
                {
                    "start_s": 0.0,
                    "end_s": duration,
                    "label": cfg.classes[int(probs.argmax())],
                    "probabilities": dict(zip(cfg.classes, map(float, probs), strict=True)),
                }
            )
    used = [s for s, p in out.present.items() if bool(p[0])]
    offset_ms = conf = None
    flags = list(features.flags)
    if out.tau_frames is not None and "joint" in used:
        offset_ms = float(-1000.0 * out.tau_frames[0] / cfg.align_fps)
        conf = float(out.offset_confidence[0])
    elif measure_offset and not is_audio:
        offset_ms, conf = _offset_from_sync_space(path, audio, flags)
    return Prediction(
        file=str(path),
        label=cfg.classes[int(probs.argmax())],
        probabilities=dict(zip(cfg.classes, map(float, probs), strict=True)),
        offset_ms=offset_ms,
        offset_confidence=conf,
        modalities=used,
        missing=[m for m in cfg.modalities if m not in used],
        flags=flags,
        timeline=timeline,
        valence=float(out.valence[0]) if out.valence is not None else None,
        transcript=features.info.get("transcript"),
    )


def _offset_from_sync_space(
    video: Path, audio: str | Path | None, flags: list[str]
) -> tuple[float | None, float | None]:
    """Audio lag and confidence from ``esva align``'s sync space; None (flagged) if undefined."""
    from esva.apps.align import align_clip

    try:
        result = align_clip(video, audio)
    except EsvaError as err:
        flags.append(f"offset not measured: {err}")
        return None, None
    flags.extend(result.flags)
    if not np.isfinite(result.offset_ms):
        return None, None
    flags.append("offset measured by the shipped sync heads (esva align)")
    return float(result.offset_ms), float(result.confidence)


def plot_timeline(pred: Prediction, classes: list[str], path: str | Path) -> Path:
    """Per-window class probabilities over time (stacked), with the overall label and offset."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in pred.timeline])
    probs = np.array([[w["probabilities"][c] for c in classes] for w in pred.timeline])
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(centres) > 1:
        ax.stackplot(centres, probs.T, labels=classes, alpha=0.85)
    else:
        ax.bar(classes, probs[0])
    offset = "n/a" if pred.offset_ms is None else f"{pred.offset_ms:+.0f} ms"
    ax.set_title(
        f"{Path(pred.file).name}: {pred.label} (audio lag {offset}; {'+'.join(pred.modalities)})",
        fontsize=9,
    )
    if len(centres) > 1:
        ax.set_xlabel("time (s, window centre)")
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
