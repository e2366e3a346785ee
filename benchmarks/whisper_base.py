"""Benchmark: the cost of ``whisper-base`` against ``whisper-tiny``, on one thread, same run.

    python benchmarks/whisper_base.py                 # 4 clips from each corpus, 3 passes
    python benchmarks/whisper_base.py --per-corpus 8 --passes 5 --pad --json

Real clips from ../shared/data (RAVDESS speech, TESS, EMOVO, ASED: English, Italian, Amharic)
are decoded once; then each encoder encodes all of them ``--passes`` times with torch on one
thread (``layer="last"``: the layer choice does not change the cost, every layer runs anyway).
The table gives seconds of compute per second of audio (the real-time factor; lower is faster),
as wall time and as this process's CPU time (less sensitive to other processes sharing the
machine), the median over passes, and base's cost as a multiple of tiny's measured in the same
run; plus the one-off set-up (building the model from the cached converted weights, modules
already imported), the
parameter count of the encoder and its feature width. ``--pad`` adds the 30 s padded mode (what
Whisper's own decoder sees; ``pad_to_30s=True``). Weights must be in the cache
(``esva weights pull whisper-tiny.en-ct2 whisper-base-ct2``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, require_shared

CORPORA = {  # corpus -> its folder under the shared data
    "ravdess": "ravdess_speech",
    "tess": "ser_corpora/tess",
    "emovo": "ser_corpora/emovo",
    "ased": "ser_corpora/ased",
}
ENCODERS = ("whisper-tiny", "whisper-base")


def load_clips(shared: Path, per_corpus: int) -> list:
    """``per_corpus`` clips of each corpus, evenly spread over its sorted list, decoded."""
    from esva.data.datasets import load_dataset
    from esva.media import load_audio

    clips = []
    for corpus, folder in CORPORA.items():
        listed = load_dataset(corpus, shared / folder)
        step = max(1, len(listed) // per_corpus)
        clips += [load_audio(c.audio) for c in listed[::step][:per_corpus]]
    return clips


def measure(name: str, clips: list, passes: int, pad: bool) -> dict:
    from esva.encoders.registry import create_encoder

    start = time.perf_counter()
    encoder = create_encoder(name, pad_to_30s=pad)
    setup_s = time.perf_counter() - start
    audio_s = sum(len(c.samples) / c.sample_rate for c in clips)
    encoder.encode(clips[0])  # warm-up: first-call allocations are not the steady cost
    wall, cpu = [], []
    for _ in range(passes):
        w0, c0 = time.perf_counter(), time.process_time()
        for clip in clips:
            encoder.encode(clip)
        wall.append((time.perf_counter() - w0) / audio_s)
        cpu.append((time.process_time() - c0) / audio_s)
    params = sum(p.numel() for p in encoder.encoder.parameters())
    return {
        "encoder": name,
        "mode": "padded 30 s" if pad else "real length",
        "wall_s_per_audio_s": statistics.median(wall),
        "cpu_s_per_audio_s": statistics.median(cpu),
        "setup_s": setup_s,
        "encoder_params_m": params / 1e6,
        "dim": encoder.dim,
        "audio_s": audio_s,
        "clips": len(clips),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-corpus", type=int, default=4, help="clips from each corpus")
    parser.add_argument("--passes", type=int, default=3, help="timed passes (median reported)")
    parser.add_argument("--pad", action="store_true", help="also time the 30 s padded mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the cost on one thread, as asked; also what extraction workers use
    import esva.encoders.whisper  # noqa: F401  # imported here: set-up times exclude transformers'

    shared = require_shared()
    clips = load_clips(shared, args.per_corpus)
    rows = []
    for pad in (False, True) if args.pad else (False,):
        results = {name: measure(name, clips, args.passes, pad) for name in ENCODERS}
        tiny = results["whisper-tiny"]
        for res in results.values():
            res["wall_x_tiny"] = res["wall_s_per_audio_s"] / tiny["wall_s_per_audio_s"]
            res["cpu_x_tiny"] = res["cpu_s_per_audio_s"] / tiny["cpu_s_per_audio_s"]
            rows.append(res)
    if args.json:
        print(json.dumps({"threads": 1, "passes": args.passes, "results": rows}))
        return
    audio_s = rows[0]["audio_s"]
    print(
        f"{rows[0]['clips']} clips ({audio_s:.1f} s of audio; RAVDESS, TESS, EMOVO, ASED), "
        f"1 torch thread, median of {args.passes} passes\n"
    )
    header = ["encoder", "mode", "dim", "encoder params (M)", "wall s / audio s",
              "x tiny (wall)", "CPU s / audio s", "x tiny (CPU)", "set-up s"]  # fmt: skip
    table = [
        [r["encoder"], r["mode"], r["dim"], round(r["encoder_params_m"], 1),
         round(r["wall_s_per_audio_s"], 4), round(r["wall_x_tiny"], 2),
         round(r["cpu_s_per_audio_s"], 4), round(r["cpu_x_tiny"], 2), round(r["setup_s"], 1)]
        for r in rows
    ]  # fmt: skip
    print(markdown_table(header, table))


if __name__ == "__main__":
    main()
