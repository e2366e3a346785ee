"""Rebuild the shipped sync heads (``src/esva/assets/sync/``) from the real clips, bit for bit.

    .venv/bin/python benchmarks/train_sync_space.py           # train on all clips, write assets
    .venv/bin/python benchmarks/train_sync_space.py --check   # retrain in a temp dir, compare
    .venv/bin/python benchmarks/train_sync_space.py --visual face --out /tmp/face-heads

The training clips are every real audio-video clip in ``../shared/data`` (README there): the 7
full-AV RAVDESS Actor_01 takes, the 14 PC-AVS and 5 video-retalking clips with their own audio,
and the 10 silent StyleTalk videos with their same-name wav. Their published sync is taken as
the positive pairing (SyncNet-style self-supervision: no labels). The shipped heads see all 36;
``benchmarks/align.py`` measures on heads of the same recipe trained without the clip being
measured (:func:`fold_spaces`, folds by speaker).

Everything runs on one thread (``torch.set_num_threads(1)``, decoding and face tracking
included): floating-point sums in another order would change the last bits of the weights.
Decoded media are cached in ``$ESVA_CACHE/align-media`` (default ``~/.cache/esva``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esva.hashing import file_sha256
from esva.sync.clip_media import ClipMedia, load_clip_media
from esva.sync.controllers import (
    UNCERTAINTY_FILE,
    StreamConfig,
    UncertaintyNet,
    fit_uncertainty,
    load_uncertainty,
    save_uncertainty,
    stream_estimates,
)
from esva.sync.degrade import add_noise_bursts, degrade_track, delay_audio, random_bursts
from esva.sync.estimate import ClipAlignConfig, estimate_from_features
from esva.sync.space import (
    ASSET_DIR,
    VISUAL_KINDS,
    SyncSpace,
    SyncSpaceConfig,
    SyncTrainConfig,
    train_sync_space,
)
from esva.weights import cache_dir

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Clip:
    """One real audio-video clip: the video, its separate audio (or None), where it is from."""

    video: Path
    audio: Path | None
    corpus: str
    speaker: str  # clips of one speaker go to one fold

    @property
    def name(self) -> str:
        return f"{self.corpus}/{self.video.name}"


def discover_clips(data: Path = DATA) -> list[Clip]:
    """Every full audio-video clip of ``data`` (see the module docstring), in a fixed order."""
    clips = [
        Clip(p, None, "ravdess", "ravdess-actor01")
        for p in sorted((data / "ravdess_av" / "Actor_01").glob("01-*.mp4"))
    ]
    for p in sorted((data / "av_sync" / "pc-avs").glob("*.mp4")):
        # 9-digit names share a 6-digit prefix per source video (same speaker)
        clips.append(Clip(p, None, "pc-avs", "pc-" + p.stem[:6]))
    for p in sorted((data / "av_sync" / "video-retalking").glob("*.mp4")):
        clips.append(Clip(p, None, "video-retalking", "vr-" + p.stem))
    for p in sorted((data / "av_sync" / "styletalk").glob("*.mp4")):
        wav = p.with_suffix(".wav")
        if wav.exists():
            clips.append(Clip(p, wav, "styletalk", "st-" + re.split(r"_clip", p.stem)[0]))
    return clips


def assign_folds(clips: list[Clip], k: int = 4) -> list[int]:
    """Speakers dealt round-robin to ``k`` folds (sorted, so the split is fixed)."""
    speakers = sorted({c.speaker for c in clips})
    fold = {s: i % k for i, s in enumerate(speakers)}
    return [fold[c.speaker] for c in clips]


def media_cache() -> Path:
    return cache_dir() / "align-media"


def load_media(clips: list[Clip], verbose: bool = False) -> list[ClipMedia]:
    """Decoded audio + face tracks of ``clips`` (cached)."""
    out = []
    for clip in clips:
        start = time.perf_counter()
        out.append(load_clip_media(clip.video, clip.audio, cache_dir=media_cache()))
        if verbose:
            print(f"  {clip.name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out


def recipe_key(recipe: SyncTrainConfig, names: list[str]) -> str:
    text = json.dumps([dataclasses.asdict(recipe), names, torch.__version__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_space(clips: list[Clip], media: list[ClipMedia], recipe: SyncTrainConfig) -> SyncSpace:
    """The recipe on ``media``, on one thread; the training clips are recorded in ``meta``."""
    torch.set_num_threads(1)
    blank = SyncSpace(recipe.space)
    feats = [blank.features(m.audio, m.track) for m in media]
    space = train_sync_space(feats, recipe)
    space.meta = {
        "recipe": dataclasses.asdict(recipe),
        "training_clips": [c.name for c in clips],
        "training_frames": int(sum(len(f) for f in feats)),
        "torch": torch.__version__,
    }
    return space


# ---------------------------------------------------------------------------------------------
# The uncertainty estimator of the neural adaptive controller


def window_errors(
    space: SyncSpace,
    media: list[ClipMedia],
    seed: int = 0,
    stream: StreamConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Streaming-window estimates on ``media`` with known injected offsets, clean and degraded
    (noise bursts, blur, dropped frames): (inputs (N, 4), errors in ms (N,))."""
    rng = np.random.default_rng(seed)
    inputs, errors = [], []
    for m in media:
        base_feats = space.features(m.audio, m.track)
        base = estimate_from_features(base_feats, space, ClipAlignConfig()).audio_lag_ms
        duration = len(m.audio.samples) / m.audio.sample_rate
        for lag_ms, degraded in ((0.0, False), (float(rng.uniform(-300, 300)), True)):
            audio, track = delay_audio(m.audio, lag_ms / 1000.0), m.track
            if degraded:
                audio = add_noise_bursts(audio, random_bursts(duration, 0.3, rng), rng)
                track = degrade_track(
                    track, random_bursts(duration, 0.2, rng), random_bursts(duration, 0.1, rng)
                )
            for w in stream_estimates(space.features(audio, track), space, stream):
                if np.isfinite(w.lag_ms):
                    inputs.append(w.inputs())
                    errors.append(w.lag_ms - (base + lag_ms))
    return np.asarray(inputs, np.float32), np.asarray(errors, np.float32)


def train_uncertainty(space: SyncSpace, media: list[ClipMedia], seed: int = 0) -> UncertaintyNet:
    torch.set_num_threads(1)
    x, err = window_errors(space, media, seed)
    return fit_uncertainty(x, err, seed=seed)


# ---------------------------------------------------------------------------------------------
# Held-out heads for the benchmark


def fold_spaces(
    clips: list[Clip],
    media: list[ClipMedia],
    folds: list[int],
    recipe: SyncTrainConfig,
    verbose: bool = False,
) -> dict[int, tuple[SyncSpace, UncertaintyNet]]:
    """For each fold, heads (and an uncertainty net) trained on the other folds' clips; cached
    in ``$ESVA_CACHE/align-folds/<recipe hash>/fold-<i>``."""
    out = {}
    for fold in sorted(set(folds)):
        train = [i for i, f in enumerate(folds) if f != fold]
        names = [clips[i].name for i in train]
        where = cache_dir() / "align-folds" / recipe_key(recipe, names) / f"fold-{fold}"
        if (where / UNCERTAINTY_FILE).exists():
            out[fold] = (SyncSpace.load(where), load_uncertainty(where))
            continue
        start = time.perf_counter()
        space = train_space([clips[i] for i in train], [media[i] for i in train], recipe)
        net = train_uncertainty(space, [media[i] for i in train])
        space.save(where, space.meta)
        save_uncertainty(net, where)
        out[fold] = (space, net)
        if verbose:
            print(
                f"  fold {fold}: trained on {len(train)} clips in "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ASSET_DIR)
    parser.add_argument("--check", action="store_true", help="retrain and compare with --out")
    parser.add_argument("--visual", choices=VISUAL_KINDS, default=SyncSpaceConfig.visual)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    clips = discover_clips(args.data)
    if not clips:
        print(f"no clips under {args.data} (see its README.md)", file=sys.stderr)
        return 2
    print(f"{len(clips)} clips; decoding and tracking faces (cached)...", file=sys.stderr)
    media = load_media(clips, verbose=True)
    recipe = SyncTrainConfig(space=SyncSpaceConfig(visual=args.visual))
    start = time.perf_counter()
    space = train_space(clips, media, recipe)
    net = train_uncertainty(space, media)
    print(f"trained in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    target = Path(tempfile.mkdtemp(prefix="sync-heads-")) if args.check else args.out
    unc = save_uncertainty(net, target)
    space.save(target, {**space.meta, "uncertainty_sha256": file_sha256(unc)})
    record = json.loads((target / "config.json").read_text())
    digests = (record["sha256"], record["uncertainty_sha256"])
    if args.check:
        shipped = json.loads((args.out / "config.json").read_text())
        same = digests == (shipped["sha256"], shipped.get("uncertainty_sha256"))
        print(f"rebuilt {digests}\nshipped {shipped['sha256'], shipped.get('uncertainty_sha256')}")
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    digest = digests[0]
    print(f"wrote {target} (heads sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
