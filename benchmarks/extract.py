"""Benchmark: how fast raw media becomes features, stage by stage, against the decode floor.

    python benchmarks/extract.py            # needs ../shared/data; writes results/extract.md

Stages, each in a fresh process on the same clips (RAVDESS Actor_01 audio-video takes, 640x360,
29.97 fps, ~3.5 s; sampled at 25 fps):

1. decode only          audio to 16 kHz + every video frame at 25 fps (the floor)
2. + faces              Haar face tracking and 64x64 grey crops
3. + fer-cnn            the FER CNN on every face crop
4. + whisper-tiny       the audio encoder: the full default per-clip pipeline
5. whole extract        ``esva extract`` with --workers 2: process start, model loading, writing
                        the store, on the same clips repeated to a few dozen

and on RAVDESS speech (audio only, 16 kHz FLAC): decode only vs the whisper-tiny store.
Reports clips/s, the real-time factor (processing time / media duration; lower is faster), the
peak resident memory of the process, and each stage's time relative to the decode floor.
Goal (issue): >= 4 clips/s for 3 s clips with the defaults, and <= 5x the decode floor.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, markdown_table, require_shared, run_child

STAGE = """
import numpy as np
from esva.media.decode import load_audio, iter_frames
from esva.media.faces import FaceTrackerConfig, iter_faces
from esva.media.types import FaceTrack
from esva.encoders import create_encoder
stage = PAYLOAD['stage']
fer = create_encoder('fer-cnn') if stage >= 3 else None
whisper = create_encoder('whisper-tiny') if stage >= 4 else None
cfg = FaceTrackerConfig(size=64, grey=True)
def run(path):
    clip = load_audio(path)
    frames = iter_frames(path, fps=25.0)
    if stage == 1:
        n = sum(1 for _ in frames)
    else:
        faces = list(iter_faces(frames, cfg))
        if fer is not None:
            fer.encode(FaceTrack(crops=np.stack([f.crop for f in faces]),
                                 timestamps_s=np.array([f.time_s for f in faces]),
                                 mask=np.array([f.found for f in faces])))
    if whisper is not None:
        whisper.encode(clip)
    return clip.duration_s
run(PAYLOAD['clips'][0])  # warm-up: first-call costs (oneDNN, caches) are not per-clip costs
t0 = time.perf_counter()
media = sum(run(p) for p in PAYLOAD['clips'])
seconds = time.perf_counter() - t0
RESULT = {'clips': len(PAYLOAD['clips']), 'seconds': seconds, 'media_s': media}
"""

AUDIO = """
from esva.media.decode import load_audio
from esva.encoders import create_encoder
enc = create_encoder('whisper-tiny') if PAYLOAD['encode'] else None
def run(path):
    clip = load_audio(path)
    if enc is not None:
        enc.encode(clip)
    return clip.duration_s
run(PAYLOAD['clips'][0])
t0 = time.perf_counter()
media = sum(run(p) for p in PAYLOAD['clips'])
RESULT = {'clips': len(PAYLOAD['clips']), 'seconds': time.perf_counter() - t0, 'media_s': media}
"""

WHOLE = """
import tempfile
from esva.data.sources import ClipSource
from esva.extract.pipeline import ExtractConfig
from esva.extract.run import run_extract
from esva.media.decode import probe
clips = [ClipSource(name=f'c{i:03d}', video=p) for i, p in enumerate(PAYLOAD['clips'])]
media = sum(probe(c.video).duration_s for c in clips)
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    summary = run_extract(clips, out, ExtractConfig(), workers=PAYLOAD['workers'], progress=False)
RESULT = {'clips': len(clips), 'seconds': time.perf_counter() - t0, 'media_s': media,
          'failed': len(summary.failed)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the 7 AV takes are repeated")
    parser.add_argument(
        "--long-repeat",
        type=int,
        default=12,
        help="repeats for a longer whole-extract run (start-up amortised, as on a real dataset)",
    )
    parser.add_argument("--speech", type=int, default=120, help="RAVDESS speech clips to use")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "extract.md")
    args = parser.parse_args()
    shared = require_shared()
    av = sorted(str(p) for p in (shared / "ravdess_av" / "Actor_01").glob("01-*.mp4")) * args.repeat
    speech = sorted(str(p) for p in (shared / "ravdess_speech").rglob("*.flac"))[: args.speech]

    load = os.getloadavg()[0]  # other jobs on the machine slow the 2-worker rows
    rows, floor = [], None
    names = ["decode only (floor)", "+ faces (Haar)", "+ fer-cnn", "+ whisper-tiny (full pipeline)"]
    for stage, name in enumerate(names, start=1):
        r = run_child(STAGE, {"stage": stage, "clips": av}, threads=1)
        floor = floor or r["seconds"] / r["clips"]  # per-clip decode time
        rows.append(
            [
                name,
                "1 process, 1 thread",
                r["clips"],
                r["clips"] / r["seconds"],
                r["seconds"] / r["media_s"],
                (r["seconds"] / r["clips"]) / floor,
                r["peak_rss_mb"],
            ]
        )
        print(rows[-1], flush=True)
    takes = av[: len(av) // args.repeat]
    runs = [(av, 1), (av, 2), (takes * args.long_repeat, 2)]
    for clips, workers in runs:
        r = run_child(WHOLE, {"clips": clips, "workers": workers}, threads=2)
        rows.append(
            [
                "whole `esva extract` (defaults)",
                f"--workers {workers}",
                r["clips"],
                r["clips"] / r["seconds"],
                r["seconds"] / r["media_s"],
                (r["seconds"] / r["clips"]) / floor,
                r["peak_rss_mb"],
            ]
        )
        print(rows[-1], flush=True)
    audio_rows, audio_floor = [], None
    for encode, name in ((False, "decode only (floor)"), (True, "+ whisper-tiny")):
        r = run_child(AUDIO, {"clips": speech, "encode": encode}, threads=1)
        audio_floor = audio_floor or r["seconds"] / r["clips"]
        audio_rows.append(
            [
                name,
                r["clips"],
                r["clips"] / r["seconds"],
                r["seconds"] / r["media_s"],
                (r["seconds"] / r["clips"]) / audio_floor,
                r["peak_rss_mb"],
            ]
        )
        print(audio_rows[-1], flush=True)

    text = [
        "# esva extract benchmark",
        "",
        f"RAVDESS Actor_01 audio-video takes ({len(av)} clips = 7 takes x {args.repeat}), "
        "2 CPU cores. Stages 1-4 run one clip after another in one process with one torch "
        "thread (after one warm-up clip); the whole-extract rows include process start-up, "
        "loading the encoders and writing the store; the last row runs the 7 takes x "
        f"{args.long_repeat}, so start-up is amortised as on a real dataset. Load average "
        f"before the run: {load:.2f}.",
        "",
        markdown_table(
            [
                "stage",
                "setting",
                "clips",
                "clips/s",
                "real-time factor",
                "x decode floor",
                "peak RSS (MB)",
            ],
            rows,
        ),
        "",
        f"RAVDESS speech, audio only ({len(speech)} FLAC clips, 16 kHz):",
        "",
        markdown_table(
            ["stage", "clips", "clips/s", "real-time factor", "x decode floor", "peak RSS (MB)"],
            audio_rows,
        ),
        "",
        "Command: `python benchmarks/extract.py`",
        "",
    ]
    from esva.io import atomic_write

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as handle:
        handle.write("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
