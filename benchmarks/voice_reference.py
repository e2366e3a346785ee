"""The voice reference that ``esva explain`` compares a clip's pitch, loudness, pace and melody
with: the median neutral RAVDESS clip of each voice register (male / female actors).

A single clip has no speaker baseline, so "higher pitch" needs a stated reference. This script
measures :func:`esva.llm.measure.voice_cues` (Praat prosody) on every neutral clip of
``ravdess_speech`` (4 per actor, actors 01-20; odd = male, even = female) and writes the
per-register medians to ``src/esva/assets/voice_reference.json``::

    python benchmarks/voice_reference.py [--data ../shared/data/ravdess_speech]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ravdess_speech"))
    parser.add_argument("--out", type=Path, default=Path("src/esva/assets/voice_reference.json"))
    args = parser.parse_args()

    import torch

    from esva.encoders import create_encoder
    from esva.io import atomic_write
    from esva.llm.measure import voice_cues
    from esva.media.decode import load_audio

    torch.set_num_threads(1)
    encoder = create_encoder("prosody")
    rows: dict[str, list] = {"male": [], "female": []}
    files = sorted(args.data.glob("Actor_*/03-01-01-*.flac"))
    if not files:
        raise SystemExit(f"no neutral RAVDESS clips under {args.data}")
    for path in files:
        actor = int(path.stem.split("-")[-1])
        enc = encoder.encode(load_audio(path))
        v = voice_cues(enc.features, enc.mask, enc.fps)
        if v is not None and v.f0_hz is not None:
            rows["male" if actor % 2 else "female"].append(v)
    out = {
        "format": "esva-voice-reference/1",
        "source": "RAVDESS speech, neutral clips (emotion 01), actors 01-20",
        "made_by": "python benchmarks/voice_reference.py",
        "registers": {},
    }
    for register, voices in rows.items():
        out["registers"][register] = {
            "clips": len(voices),
            "f0_hz": round(float(np.median([v.f0_hz for v in voices])), 2),
            "f0_range_st": round(float(np.median([v.f0_range_st for v in voices])), 3),
            "loudness_db": round(float(np.median([v.loudness_db for v in voices])), 2),
            "rate_per_s": round(float(np.median([v.rate_per_s for v in voices])), 3),
        }
        print(register, out["registers"][register])
    with atomic_write(args.out) as handle:
        handle.write(json.dumps(out, indent=2) + "\n")
    print("->", args.out)


if __name__ == "__main__":
    main()
