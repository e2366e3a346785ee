"""The feature store written by ``esva extract``.

Layout (one file per clip and encoder, so encoders can be added later and a reader loads only
what it needs)::

    OUT/
      extract.json                 full settings (esva.extract.provenance): encoders with their
                                   modality, options and records, fps, faces, ASR, sample rate
      <encoder>/<clip>.safetensors features (T, D) + mask + fps/start metadata (esva.data.streams)
      manifest/<clip>.json         one entry per clip, written last and atomically: "done" marker
      manifest.jsonl               all entries, in input order (rewritten at the end of a run)
      labels.csv                   name,discrete,valence,speaker,split — what ``esva train`` reads

A clip counts as done when its manifest entry exists and every stream file it lists is present
with the sha256 recorded there; a truncated or corrupted file is detected and the clip is
recomputed. Because the entry is written after the streams, a run killed at any instant (even
kill -9) leaves only clips that are either complete or recomputed on resume.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from esva.data.sources import ClipSource
from esva.data.streams import clip_path, write_stream
from esva.errors import EsvaError
from esva.extract.pipeline import ClipFeatures, ExtractConfig
from esva.extract.provenance import settings_difference, store_encoders, store_settings
from esva.hashing import file_sha256
from esva.io import atomic_write, read_json, write_json

SETTINGS = "extract.json"
MANIFEST_DIR = "manifest"
MANIFEST = "manifest.jsonl"
LABELS = "labels.csv"


class FeatureStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # --- settings -----------------------------------------------------------------------------
    def check_settings(self, config: ExtractConfig) -> None:
        """Refuse to add clips extracted with other settings (encoders may be added), naming
        the difference: sampling, face detector, ASR, or an encoder's modality or options."""
        path = self.root / SETTINGS
        if not path.exists():
            return
        difference = settings_difference(read_json(path), config)
        if difference is not None:
            raise EsvaError(f"store was extracted with {difference}; use another --out", path)

    def write_settings(self, config: ExtractConfig, entries: list[dict]) -> None:
        """Record the full settings (esva.extract.provenance) and every encoder's record."""
        path = self.root / SETTINGS
        saved = read_json(path) if path.exists() else {}
        records = dict(saved.get("records") or {})
        for entry in entries:
            for name, stream in entry.get("streams", {}).items():
                if stream.get("record"):
                    records[name] = stream["record"]
        settings = store_settings(config, records)
        # Encoders an earlier run added stay recorded (check_settings made them compatible).
        previous = {k: v for k, v in store_encoders(saved).items() if k not in settings["encoders"]}
        for name, entry in previous.items():
            settings["encoders"][name] = entry
            settings[entry["modality"]] = [*settings.get(entry["modality"], []), name]
            settings["records"][name] = entry.get("record") or {}
        write_json(path, settings)

    # --- per clip -----------------------------------------------------------------------------
    def entry_path(self, clip: str) -> Path:
        return clip_path(self.root, MANIFEST_DIR, clip).with_suffix(".json")

    def entry(self, clip: str) -> dict | None:
        path = self.entry_path(clip)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a damaged entry: the clip is simply redone

    def is_done(self, clip: str, encoders: list[str], retry_failed: bool = False) -> bool:
        entry = self.entry(clip)
        if entry is None or entry.get("encoders") is None:
            return False
        if entry["status"] == "failed":
            return not retry_failed and set(encoders) <= set(entry["encoders"])
        if not set(encoders) <= set(entry["encoders"]):
            return False
        for stream in entry["streams"].values():
            path = self.root / stream["file"]
            if not path.exists() or file_sha256(path) != stream["sha256"]:
                return False
        return True

    def write_clip(self, source: ClipSource, features: ClipFeatures, encoders: list[str]) -> dict:
        streams = {}
        for name, stream in features.streams.items():
            path = clip_path(self.root, name, source.name)
            write_stream(path, stream)
            streams[name] = {
                "file": str(path.relative_to(self.root)),
                "sha256": file_sha256(path),
                "shape": list(stream.features.shape),
                "fps": stream.fps,
                "start_s": stream.start_s,
                "coverage": float(stream.mask.mean()),
                "record": stream.record_dict(),
            }
        entry = self._base(source, encoders)
        entry.update(
            status="degraded" if features.flags else "ok",
            flags=features.flags,
            streams=streams,
            info=features.info,
        )
        write_json(self.entry_path(source.name), entry)
        return entry

    def write_failed(self, source: ClipSource, encoders: list[str], reason: str) -> dict:
        entry = self._base(source, encoders)
        entry.update(status="failed", reason=reason, streams={}, flags=[])
        write_json(self.entry_path(source.name), entry)
        return entry

    @staticmethod
    def _base(source: ClipSource, encoders: list[str]) -> dict:
        return {
            "clip": source.name,
            "label": source.label,
            "valence": source.valence,
            "speaker": source.speaker,
            "split": source.split,
            "media": [str(p) for p in source.media],
            "encoders": list(encoders),
        }

    # --- the whole store ----------------------------------------------------------------------
    def finalize(self, sources: list[ClipSource], config: ExtractConfig) -> dict[str, int]:
        """Write extract.json, manifest.jsonl and labels.csv for ``sources`` (in their order)."""
        entries = [e for s in sources if (e := self.entry(s.name)) is not None]
        self.write_settings(config, entries)
        with atomic_write(self.root / MANIFEST) as handle:
            handle.writelines(json.dumps(e) + "\n" for e in entries)
        usable = [e for e in entries if e["status"] != "failed"]
        with atomic_write(self.root / LABELS, newline="") as handle:
            w = csv.writer(handle)
            w.writerow(["name", "discrete", "valence", "speaker", "split"])
            for e in usable:
                valence = "" if e.get("valence") is None else f"{e['valence']:.4f}"
                w.writerow(
                    [
                        e["clip"],
                        e.get("label") or "",
                        valence,
                        e.get("speaker") or "",
                        e.get("split") or "",
                    ]
                )
        counts: dict[str, int] = {}
        for e in entries:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        return counts
