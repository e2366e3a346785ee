"""How features were extracted: recorded in every feature store and every model folder.

A feature store's ``extract.json`` holds its FULL extraction settings (:func:`store_settings`):
every encoder with its modality, the options it ran with (e.g. Whisper's layer) and its record
(name, version, weights sha256, layer), the video sampling rate and face detector, whether
speech was transcribed and by which ASR model, and the audio sample rate.

A model trained on some of the store's folders carries the part of those settings it needs in
ONE file, ``extraction.json`` (:func:`model_extraction`, :func:`write_extraction`); an optional
``face_track`` section there frames the clip face track that the sync heads and a fused face
expert read (:class:`esva.media.track.FaceTrackSettings`; absent: its defaults). And
:func:`extractor_for_model` turns a model folder back into the :class:`FeatureExtractor` that
reproduces its features, checking that the encoders found here are the ones it was trained on
(weights sha256 and layer). A model served with other settings (haar instead of MTCNN faces,
25 instead of 10 fps, the last Whisper layer instead of layer 2) gives silently different
predictions; this module makes that an error instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esva.errors import EsvaError
from esva.extract.pipeline import ASR_MODEL, ExtractConfig, FeatureExtractor
from esva.io import atomic_write, read_json
from esva.media.decode import TARGET_SAMPLE_RATE
from esva.media.track import FaceTrackSettings

FORMAT = "esva-extraction/1"
EXTRACTION = "extraction.json"  # in every model folder
STORE_SETTINGS = "extract.json"  # in every feature store
MODALITIES = ("audio", "visual", "text")
# Record fields that change the features: a different value means different features.
CHECKED_RECORD_KEYS = ("weights_sha256", "layer")
ASSUME_DEFAULT_HINT = "or pass --assume-default-extraction to extract with esva's defaults"


# ----------------------------------------------------------------------------- stores


def store_settings(config: ExtractConfig, records: Mapping[str, dict]) -> dict[str, Any]:
    """A feature store's ``extract.json``: everything that shaped its features.

    The legacy keys (``audio``/``visual``/``text`` lists and ``records``) are kept so readers
    of older stores and of this one agree.
    """
    encoders = {}
    for modality in MODALITIES:
        for name in getattr(config, modality):
            encoders[name] = {
                "modality": modality,
                "options": dict(config.encoder_options.get(name, {})),
                "record": dict(records.get(name) or {}),
            }
    asr = bool(config.text) and config.asr
    return {
        "format": FORMAT,
        "encoders": encoders,
        "fps": config.fps,
        "faces": config.faces,
        "asr": asr,
        "asr_model": ASR_MODEL if asr else None,
        "sample_rate": TARGET_SAMPLE_RATE,
        "audio": list(config.audio),
        "visual": list(config.visual),
        "text": list(config.text),
        "records": {name: e["record"] for name, e in encoders.items()},
    }


def store_encoders(settings: Mapping[str, Any]) -> dict[str, dict]:
    """``{name: {modality, options, record}}`` of a store's settings (old stores too)."""
    if isinstance(settings.get("encoders"), dict):
        return {k: dict(v) for k, v in settings["encoders"].items()}
    # Stores written before the format: options were not recorded (None = unknown).
    records = settings.get("records") or {}
    return {
        name: {"modality": m, "options": None, "record": dict(records.get(name) or {})}
        for m in MODALITIES
        for name in settings.get(m) or []
    }


def settings_difference(saved: Mapping[str, Any], config: ExtractConfig) -> str | None:
    """What differs between a store's saved settings and ``config`` (None: compatible).

    Encoders may be added to a store; an encoder it already has must run with the same
    modality and options, and the sampling settings must be equal.
    """
    new = store_settings(config, {})
    for key in ("fps", "faces", "sample_rate"):
        if key in saved and saved[key] != new[key]:
            return f"{key}={saved[key]!r}, not {new[key]!r}"
    asr_now, asr_then = (new["asr"], new["asr_model"]), (saved.get("asr"), saved.get("asr_model"))
    if "asr" in saved and config.text and saved.get("text") and asr_then != asr_now:
        return f"asr={saved['asr']!r} ({saved.get('asr_model')}), not {new['asr']!r}"
    old = store_encoders(saved)
    for name, entry in new["encoders"].items():
        if name not in old:
            continue
        if old[name].get("modality") != entry["modality"]:
            return f"{name} as a {old[name].get('modality')} encoder, not {entry['modality']}"
        before = old[name].get("options")
        # An old store did not record options: its clips' records (layer, weights) still tell,
        # and extractor_for_model checks those against the encoders that run.
        if before is not None and before != entry["options"]:
            return f"{name} options {before!r}, not {entry['options']!r}"
    return None


# ----------------------------------------------------------------------------- models


def model_extraction(store_root: str | Path, streams: Mapping[str, str]) -> dict[str, Any]:
    """The part of a store's settings that a model trained on ``streams`` needs.

    ``streams`` maps a model stream (a modality for ESVA, an LM stream for the LLM path) to its
    store folder(s), ``"whisper-tiny+prosody"`` joining two. A folder may be a link into another
    store: the settings are read from the ``extract.json`` beside the folder it points to. A
    folder whose store has no settings is recorded with unknown options (``None``):
    :func:`extractor_for_model` then refuses it unless told to assume the defaults.
    """
    root = Path(store_root)
    encoders: dict[str, dict] = {}
    sampling: dict[str, set] = {"fps": set(), "faces": set()}
    asr: set = set()
    for spec in streams.values():
        for folder in spec.split("+"):
            path = (root / folder).resolve().parent / STORE_SETTINGS
            settings = read_json(path) if path.is_file() else {}
            found = store_encoders(settings).get(folder)
            if found is None:
                encoders[folder] = {"modality": None, "options": None, "record": None}
                continue
            encoders[folder] = found
            if found["modality"] == "visual":
                sampling["fps"].add(settings.get("fps"))
                sampling["faces"].add(settings.get("faces"))
            if found["modality"] == "text":
                asr.add((bool(settings.get("asr", True)), settings.get("asr_model", ASR_MODEL)))
    for key, values in sampling.items():
        if len(values) > 1:
            raise EsvaError(
                f"the model's visual folders come from stores with different {key} "
                f"({sorted(map(str, values))}): extract them with one setting",
                root,
            )
    if len(asr) > 1:
        raise EsvaError("the model's text folders come from stores with different ASR", root)
    has = {e["modality"] for e in encoders.values()}
    asr_on, asr_model = next(iter(asr)) if asr else (False, None)
    return {
        "format": FORMAT,
        "encoders": encoders,
        # Only what shaped the model's features: an audio-only model has no fps or detector.
        "fps": next(iter(sampling["fps"])) if sampling["fps"] else None,
        "faces": next(iter(sampling["faces"])) if sampling["faces"] else None,
        "asr": asr_on,
        "asr_model": asr_model if asr_on else None,
        "sample_rate": TARGET_SAMPLE_RATE if has & {"audio", "text"} else None,
    }


def write_extraction(model_dir: str | Path, extraction: Mapping[str, Any]) -> Path:
    """Write ``extraction.json`` into a model folder (atomically, stable key order)."""
    path = Path(model_dir) / EXTRACTION
    # Sorted keys: the same settings always give the same bytes (the shipped model's sha256).
    with atomic_write(path) as handle:
        handle.write(json.dumps(dict(extraction), indent=2, sort_keys=True) + "\n")
    return path


def read_extraction(model_dir: str | Path) -> dict[str, Any]:
    """A model folder's ``extraction.json``; one-line error when it is missing or malformed."""
    path = Path(model_dir) / EXTRACTION
    if not path.is_file():
        raise EsvaError(
            "missing: the model folder does not record how its features were extracted; "
            f"write it by training with this esva version, {ASSUME_DEFAULT_HINT}",
            path,
        )
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EsvaError(f"not an extraction record of format {FORMAT}", path)
    if not isinstance(data.get("encoders"), dict) or not data["encoders"]:
        raise EsvaError("records no encoders", path)
    return data


def default_extraction(streams: Mapping[str, str]) -> dict[str, Any]:
    """What :func:`extractor_for_model` assumes for a folder without ``extraction.json``:
    esva's extraction defaults (ExtractConfig), each encoder's modality from the registry."""
    from esva.encoders import create_encoder, encoder_names

    config = ExtractConfig()
    known = encoder_names()
    encoders = {}
    for stream, spec in streams.items():
        for name in spec.split("+"):
            if stream in MODALITIES:
                modality = stream
            elif name in known:
                modality = create_encoder(name, pretrained=False).modality
            else:
                modality = None
            encoders[name] = {"modality": modality, "options": {}, "record": None}
    modalities = {e["modality"] for e in encoders.values()}
    asr = "text" in modalities and config.asr
    return {
        "format": FORMAT,
        "encoders": encoders,
        "fps": config.fps if "visual" in modalities else None,
        "faces": config.faces if "visual" in modalities else None,
        "asr": asr,
        "asr_model": ASR_MODEL if asr else None,
        "sample_rate": TARGET_SAMPLE_RATE,
        "assumed_default": True,
    }


def extractor_for_model(
    model_dir: str | Path,
    streams: Mapping[str, str] | None = None,
    *,
    assume_default: bool = False,
    asr: bool | None = None,
    pretrained: bool = True,
) -> FeatureExtractor:
    """The :class:`FeatureExtractor` that reproduces the features of the model in ``model_dir``.

    ``streams`` (model stream -> folder spec) are the folders the model reads; each must be
    recorded in ``extraction.json``. Without that file, ``assume_default=True`` extracts them
    with esva's defaults (``streams`` is then required). ``asr=False`` turns transcription off
    even where the model's text features were made with it (flagged by the extractor as
    ``no-text``). The encoders loaded here must have the weights sha256 and layer recorded.
    ``extractor.extraction`` holds the settings used.
    """
    from esva.encoders import encoder_names

    model_dir = Path(model_dir)
    path = model_dir / EXTRACTION
    if path.is_file() or not assume_default:
        extraction = read_extraction(model_dir)
    else:
        if streams is None:
            raise EsvaError("cannot assume the default extraction without the model's streams")
        extraction = default_extraction(streams)
    encoders = extraction["encoders"]
    wanted = [f for spec in (streams or {}).values() for f in spec.split("+")] or list(encoders)
    known = encoder_names()
    parts: dict[str, list[str]] = {m: [] for m in MODALITIES}
    options: dict[str, dict] = {}
    for folder in dict.fromkeys(wanted):
        entry = encoders.get(folder)
        if entry is None:
            raise EsvaError(f"does not record the features of {folder!r}", path)
        name = (entry.get("record") or {}).get("name") or folder
        if name not in known:
            raise EsvaError(
                f"the model's features {folder!r} come from {name!r}, which is not an esva "
                "encoder; score it on a feature store with `esva evaluate` instead",
                path if path.is_file() else model_dir,
            )
        if entry.get("modality") not in MODALITIES or entry.get("options") is None:
            if not assume_default:
                raise EsvaError(
                    f"does not record how {folder!r} was extracted (its store had no "
                    f"settings); re-extract and retrain, {ASSUME_DEFAULT_HINT}",
                    path,
                )
            if entry.get("modality") not in MODALITIES:
                from esva.encoders import create_encoder

                entry = {**entry, "modality": create_encoder(name, pretrained=False).modality}
        parts[entry["modality"]].append(name)
        options[name] = dict(entry.get("options") or {})
    rate = extraction.get("sample_rate")
    if rate not in (None, TARGET_SAMPLE_RATE):
        raise EsvaError(f"features made from {rate} Hz audio; esva decodes {TARGET_SAMPLE_RATE}")
    defaults = ExtractConfig()
    use_asr = bool(extraction.get("asr")) if asr is None else bool(asr and extraction.get("asr"))
    if extraction.get("asr_model") not in (None, ASR_MODEL):
        raise EsvaError(f"transcripts from {extraction['asr_model']!r}, not {ASR_MODEL}", path)
    face_track = defaults.face_track
    if extraction.get("face_track") is not None:
        face_track = FaceTrackSettings.from_dict(extraction["face_track"], path)
    config = ExtractConfig(
        audio=parts["audio"],
        visual=parts["visual"],
        text=parts["text"],
        fps=float(extraction.get("fps") or defaults.fps),
        faces=str(extraction.get("faces") or defaults.faces),
        asr=use_asr,
        encoder_options={k: v for k, v in options.items() if v},
        face_track=face_track,
    )
    extractor = FeatureExtractor(config, pretrained=pretrained)
    check_records(
        extractor.records,
        {n: e.get("record") or {} for n, e in encoders.items()},
        path,
    )
    used = {**extraction, "asr": use_asr, "asr_model": ASR_MODEL if use_asr else None}
    used["encoders"] = {n: encoders.get(n, {}) for n in config.encoders}
    extractor.extraction = used
    return extractor


def extraction_summary(extractor: FeatureExtractor) -> dict[str, Any]:
    """The settings an extractor runs with, for reports (``esva predict --json``'s
    ``extraction``; :func:`esva.extract.clip.analyse_clip` adds the clip's ``face_track``)."""
    e = dict(extractor.extraction or {})
    return {
        "encoders": {
            name: {
                "modality": (e.get("encoders", {}).get(name) or {}).get("modality"),
                "options": extractor.config.encoder_options.get(name, {}),
                "record": rec,
            }
            for name, rec in extractor.records.items()
        },
        "fps": e.get("fps"),
        "faces": e.get("faces"),
        "asr": bool(e.get("asr")),
        "asr_model": e.get("asr_model"),
        "sample_rate": e.get("sample_rate"),
        "assumed_default": bool(e.get("assumed_default", False)),
    }


def check_records(
    live: Mapping[str, dict], trained: Mapping[str, dict], source: str | Path | None = None
) -> None:
    """Refuse encoders whose weights or layer differ from those the model was trained on."""
    for name, saved in trained.items():
        now = live.get(name)
        if now is None or not saved:
            continue
        for key in CHECKED_RECORD_KEYS:
            if saved.get(key) and now.get(key) and str(saved[key]) != str(now[key]):
                raise EsvaError(
                    f"encoder {name!r} has {key} {now[key]!r} here, the model was trained on "
                    f"features with {saved[key]!r}",
                    source,
                )
