"""Features for benchmarks/generalise.py: five corpora, every Whisper hidden state pooled.

Per corpus and encoder, ``pooled_layers`` (benchmarks/_xcorpus_features.py) runs the encoder once
per clip and keeps the mean and std over time of EVERY hidden state: (n_states, 2D) per clip,
cached in chunks under ``<work>/features/<corpus>/`` so a killed run resumes. One cache per
corpus keeps a corpus's chunks valid when the corpus list changes.

    python benchmarks/_generalise_features.py --encoders whisper-tiny whisper-base
    python benchmarks/_generalise_features.py --encoders whisper-tiny@speech --augmented 1

An encoder key ending in ``@speech`` pools over the frames the energy VAD calls speech only
(``_xcorpus_features.pool_states``; the encoder's ``speech_only`` option at run time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _xcorpus_features as xf
from _common import ROOT, SHARED

CORPORA = {**xf.CORPORA, "nemo": "ser_corpora/nemo"}
WORK = ROOT / "runs" / "bench" / "generalise"


def load_corpus(corpus: str, shared: Path = SHARED) -> list:
    """One corpus's clips in ser7 (each adapter's sort order)."""
    from esva.data.corpora import load_corpora

    return list(load_corpora({corpus: shared / CORPORA[corpus]}, target="ser7"))


def corpus_features(corpus: str, encoder: str, work: Path = WORK) -> tuple[list, np.ndarray]:
    """(clips, (N, n_states, 2D) float32) of one corpus, computed once and cached."""
    clips = load_corpus(corpus)
    names, x = xf.pooled_layers(clips, encoder, work / "features" / corpus)
    if names != [c.name for c in clips]:
        raise RuntimeError(f"feature cache of {corpus}/{encoder} does not match the clips")
    return clips, x


def augmented_features(
    corpus: str, encoder: str, copy: int = 0, work: Path = WORK
) -> tuple[list, np.ndarray, list[list[str]]]:
    """Pooled features of one seeded augmented copy of every clip (esva.media.augment), cached
    in chunks like the clean ones; babble comes from 40 clips of the same corpus by other
    speakers. Returns (clips, (N, n_states, 2D), each clip's chain)."""
    import hashlib
    import json
    import time

    import torch

    from esva.encoders import create_encoder
    from esva.encoders.whisper import to_16k
    from esva.io import atomic_path
    from esva.media import load_audio
    from esva.media.augment import augment

    torch.set_num_threads(1)
    clips = load_corpus(corpus)
    cache = work / "augmented" / f"{corpus}_{copy}"
    name, speech = xf.split_key(encoder)  # "<encoder>@speech": pooled over speech frames only
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(copy)
    pool_idx = rng.choice(len(clips), min(40, len(clips)), replace=False)
    pool = None
    enc = None
    rows, chains = [], []
    t0 = time.perf_counter()
    for start in range(0, len(clips), xf.CHUNK):
        chunk = clips[start : start + xf.CHUNK]
        path = cache / f"{encoder}_{start:05d}.npz"
        if path.exists():
            data = np.load(path, allow_pickle=False)
            if list(data["names"]) == [c.name for c in chunk]:
                rows.append(data["x"])
                chains += json.loads(str(data["chains"]))
                continue
        if enc is None:
            enc = create_encoder(name, layer="last")
            pool = [(clips[i].speaker, to_16k(load_audio(clips[i].audio))) for i in pool_idx]
        part, part_chains = [], []
        for clip in chunk:
            seed = int(hashlib.sha256(f"{clip.name}/{copy}".encode()).hexdigest()[:8], 16)
            babble = [a for spk, a in pool if spk != clip.speaker]
            samples, chain = augment(to_16k(load_audio(clip.audio)), seed, babble)
            states = xf._all_states(enc, samples)
            part.append(xf.pool_states(states, samples, speech))
            part_chains.append(chain)
        x = np.stack(part).astype(np.float32)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                names=np.array([c.name for c in chunk]),
                x=x,
                chains=np.array(json.dumps(part_chains)),
            )
        rows.append(x)
        chains += part_chains
        print(
            f"[augmented {encoder} {corpus} #{copy}] {start + len(chunk)}/{len(clips)} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return clips, np.concatenate(rows), chains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["whisper-tiny"])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--augmented", type=int, default=0, help="augmented copies per clip")
    args = parser.parse_args()
    for copy in range(args.augmented):
        for encoder in args.encoders:
            for corpus in args.corpora:
                clips, x, _ = augmented_features(corpus, encoder, copy, args.work)
                print(f"{encoder} {corpus} augmented #{copy}: {x.shape}", flush=True)
    for encoder in args.encoders:
        for corpus in args.corpora:
            clips, x = corpus_features(corpus, encoder, args.work)
            print(f"{encoder} {corpus}: {len(clips)} clips, {x.shape}", flush=True)


if __name__ == "__main__":
    main()
