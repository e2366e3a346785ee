"""Features for benchmarks/crosscorpus.py: the four corpora, every Whisper layer pooled, eGeMAPS.

``pooled_layers`` runs the Whisper encoder once per clip and keeps, for EVERY hidden state
(index 0 = the embedding output, i = output of block i, the last one after the final norm, as
``esva.encoders.whisper``), the mean and the standard deviation over the clip's frames:
(n_states, 2 * D) per clip. That is the cheap proxy the layer is chosen with (logistic
regression on validation speakers only) and the input of the mean-pool baseline. Written in
chunks into ``cache/`` so that a killed run resumes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

CORPORA = {  # corpus -> its folder under the shared data
    "ravdess": "ravdess_speech",
    "tess": "ser_corpora/tess",
    "emovo": "ser_corpora/emovo",
    "ased": "ser_corpora/ased",
}
CHUNK = 250


def load_all(shared: Path) -> list:
    """The four corpora in ser7, in load_corpora's order (corpus, then each adapter's sort)."""
    from esva.data.corpora import load_corpora

    return list(load_corpora({c: shared / f for c, f in CORPORA.items()}, target="ser7"))


def _all_states(encoder, samples: np.ndarray) -> np.ndarray:
    """(n_states, T, D) hidden states of one clip (windows of 30 s concatenated in time)."""
    import torch

    from esva.encoders.whisper import HOP_LENGTH, SAMPLE_RATE, WINDOW_S

    window = int(WINDOW_S * SAMPLE_RATE)
    parts = []
    for i in range(0, len(samples), window):
        piece = samples[i : i + window]
        if len(piece) < 2 * HOP_LENGTH:
            continue
        mel = encoder.log_mel(piece)[..., : 2 * encoder.max_frames]
        with torch.inference_mode():
            states = encoder.hidden_states(mel.to(encoder.encoder.conv1.weight.dtype))
        n_out = math.ceil((len(piece) // HOP_LENGTH) / 2)
        parts.append(torch.stack([s[0, :n_out] for s in states]).float().numpy())
    return np.concatenate(parts, axis=1)


SPEECH = "@speech"  # an encoder key's suffix: the statistics over the speech frames only


def split_key(key: str) -> tuple[str, bool]:
    """``"whisper-tiny@speech"`` -> (``"whisper-tiny"``, True): the encoder and whether its
    statistics are pooled over the speech frames only (``esva.media.vad.speech_frames``)."""
    return key.removesuffix(SPEECH), key.endswith(SPEECH)


def pool_states(states: np.ndarray, samples: np.ndarray, speech: bool) -> np.ndarray:
    """(n_states, T, D) hidden states of one clip -> (n_states, 2D) mean and std over time
    (with ``speech``: over the frames the energy VAD calls speech, as the Whisper encoders'
    ``speech_only`` option masks them)."""
    if speech:
        from esva.encoders.whisper import FPS, SAMPLE_RATE
        from esva.media.vad import speech_frames

        states = states[:, speech_frames(samples, SAMPLE_RATE, states.shape[1], FPS)]
    return np.concatenate([states.mean(1), states.std(1)], axis=1)


def pooled_layers(
    clips: list, encoder_name: str, cache: Path, store: Path | None = None, layer: str = "last"
) -> tuple[list[str], np.ndarray]:
    """Mean and std per hidden state of every clip: names and (N, n_states, 2D) float32.

    With ``store``, the same pass also writes hidden state ``layer`` of each clip it computes
    into that esva feature store, exactly as ``esva extract --audio ENCODER`` with that layer
    would (same extractor object, decoding, flags and record; the features are identical), so
    the chosen layer costs no second pass. One torch thread: the store is the same bit for bit
    on every run (``esva extract`` itself uses all cores with ``--workers 1``, which changes
    the last bits of the features). A chunk is computed again unless both its pooled file and
    its clips in ``store`` exist.
    """
    import torch

    from esva.encoders.whisper import FPS as WHISPER_FPS
    from esva.encoders.whisper import to_16k
    from esva.extract.feature_store import FeatureStore
    from esva.extract.pipeline import ClipFeatures, ExtractConfig, FeatureExtractor

    torch.set_num_threads(1)
    cache.mkdir(parents=True, exist_ok=True)
    key = encoder_name
    encoder_name, speech = split_key(key)
    if speech and store is not None:
        raise ValueError("a speech-only key has no feature store")
    config = ExtractConfig(
        audio=[encoder_name], visual=[], text=[], encoder_options={encoder_name: {"layer": layer}}
    )
    extractor = encoder = None
    index = None
    names_all, parts = [], []
    t0, done = time.perf_counter(), 0
    for start in range(0, len(clips), CHUNK):
        chunk = clips[start : start + CHUNK]
        path = cache / f"{key}_{start:05d}.npz"
        names = [c.name for c in chunk]
        stored = store is None or all(
            FeatureStore(store).is_done(n, config.encoders) for n in names
        )
        if path.exists() and stored:
            data = np.load(path, allow_pickle=False)
            if list(data["names"]) == names:
                names_all += names
                parts.append(data["x"])
                continue
        if extractor is None:
            extractor = FeatureExtractor(config)
            encoder = extractor.encoders[encoder_name]
            index = encoder.layers
        rows = []
        for clip in chunk:
            out = ClipFeatures(streams={})
            audio = extractor._audio(clip, out)  # esva extract's decoding, flags and info
            samples = to_16k(audio)
            states = _all_states(encoder, samples)
            rows.append(pool_states(states, samples, speech))
            if store is not None:
                from esva.data.streams import StreamFeatures

                feats = states[index].mean(0)
                out.info["seconds"] = 0.0  # not comparable: one pass serves two purposes
                out.streams[encoder_name] = StreamFeatures(
                    feats,
                    WHISPER_FPS,
                    float(audio.start_s),
                    np.ones(len(feats), dtype=bool),
                    encoder.record.to_dict(),
                )
                FeatureStore(store).write_clip(clip, out, config.encoders)
        x = np.stack(rows).astype(np.float32)
        from esva.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, names=np.array(names), x=x)
        names_all += names
        parts.append(x)
        done += len(chunk)
        rate = done / (time.perf_counter() - t0)
        print(
            f"[pooled {key}] {start + len(chunk)}/{len(clips)} clips ({rate:.2f} clips/s this run)",
            flush=True,
        )
    return names_all, np.concatenate(parts)


def egemaps(clips: list, cache: Path) -> np.ndarray:
    """eGeMAPS v02 functionals (88-d) per clip, decoded by esva (the corpora are Opus/FLAC)."""
    import opensmile

    from esva.media import load_audio

    names = [c.name for c in clips]
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if list(data["names"]) == names:
            return data["x"]
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    t0, rows = time.perf_counter(), []
    for n, clip in enumerate(clips, 1):
        audio = load_audio(clip.audio)
        signal = np.asarray(audio.samples, dtype=np.float32).reshape(-1)
        rows.append(smile.process_signal(signal, audio.sample_rate).to_numpy(np.float32)[0])
        if n % 500 == 0:
            print(f"[egemaps] {n}/{len(clips)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    x = np.stack(rows)
    from esva.io import atomic_path

    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, names=np.array(names), x=x)
    return x
