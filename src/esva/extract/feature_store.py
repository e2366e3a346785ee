"""The feature store written by ``esva extract``.

Layout (one file per clip and encoder, so encoders can be added later and a reader loads only
what it needs)::

    OUT/
      extract.json                 settings and the encoders' records (name, version, sha256)
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
        """Refuse to mix clips sampled differently into one store (encoders may be added)."""
        path = self.root / SETTINGS
        if not path.exists():
            return
        saved = read_json(path)
        for key in ("fps", "faces"):
            if saved.get(key) != getattr(config, key):
                raise EsvaError(
                    f"store was extracted with {key}={saved.get(key)!r}, not "
                    f"{getattr(config, key)!r}; use another --out",
                    path,
                )

    def write_settings(self, config: ExtractConfig, entries: list[dict]) -> None:
        """Record the settings and every encoder's record (name, version, weights sha256)."""
        path = self.root / SETTINGS
        records = read_json(path).get("records", {}) if path.exists() else {}
        for entry in entries:
            for name, stream in entry.get("streams", {}).items():
                records[name] = stream.get("record", {})
        settings = {
            "fps": config.fps,
            "faces": config.faces,
            "audio": config.audio,
            "visual": config.visual,
            "text": config.text,
            "records": records,
        }
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
                "record": stream.record or {},
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
