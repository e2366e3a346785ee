"""A seeded synthetic audio-visual emotion corpus of feature sequences.

It is built so that each ESVA component has something real to find:

* **short time scale** (audio): a fast modulation at 5 Hz or 11 Hz — visible to MSFE's
  60-180 ms branches, invisible to a frame-wise model (both have the same value distribution);
* **long time scale** (audio): a slow oscillation at 0.4 Hz or 1.2 Hz — visible to the
  0.5-1 s branches only;
* **cross-modal timing**: eyebrow pulses in the video either coincide with vocal-emphasis pulses
  in the audio ("sync" classes) or fall at independent times ("async" classes). Each stream on
  its own looks the same either way; only frames compared *after alignment* tell them apart;
* every clip's video is offset from its audio by a known τ (up to ±``max_offset_s``), and both
  streams share an articulation signal (syllable bursts) from which τ can be recovered;
* a frame-wise "smile" level in the video and a noisy utterance-level text vector add weak,
  realistic cues; speakers add their own bias; some clips lack video or text.

Class design (short, long, timing): neutral (5 Hz, 0.4 Hz, sync), angry (11, 0.4, sync),
happy (11, 1.2, sync), sad (5, 1.2, sync), worried (5, 1.2, async), surprise (11, 1.2, async).
So sad/worried and happy/surprise differ *only* in cross-modal timing, neutral/angry and
happy/sad only at the short scale, angry/happy and neutral/sad only at the long scale.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from esva.data.streams import StreamFeatures, clip_path, write_stream
from esva.io import atomic_write, write_json
from esva.labelsets import MER2023_CLASSES as MER_CLASSES

# class -> (short-scale Hz, long-scale Hz, pulses in sync, valence)
CLASS_CUES: dict[str, tuple[float, float, bool, float]] = {
    "neutral": (5.0, 0.4, True, 0.0),
    "angry": (11.0, 0.4, True, -0.6),
    "happy": (11.0, 1.2, True, 0.8),
    "sad": (5.0, 1.2, True, -0.7),
    "worried": (5.0, 1.2, False, -0.4),
    "surprise": (11.0, 1.2, False, 0.3),
}
SMILE = {"happy": 0.6, "surprise": 0.3}


@dataclass
class SyntheticConfig:
    clips_per_class: int = 100
    n_speakers: int = 12
    audio_dim: int = 32
    visual_dim: int = 16
    text_dim: int = 16
    audio_fps: float = 50.0
    visual_fps: float = 25.0
    min_duration_s: float = 2.5
    max_duration_s: float = 5.0
    max_offset_s: float = 0.3
    noise: float = 0.6  # white noise on every feature (std; the cue signals have std ~1)
    p_missing_visual: float = 0.1
    p_missing_text: float = 0.3
    text_signal: float = 0.35  # how strongly the text vector points at its class prototype
    seed: int = 0


def _bumps(times: np.ndarray, centres: np.ndarray, width: float) -> np.ndarray:
    """Sum of Gaussian bumps evaluated at ``times`` (continuous: any offset is exact)."""
    if len(centres) == 0:
        return np.zeros_like(times)
    return np.exp(-0.5 * ((times[:, None] - centres[None, :]) / width) ** 2).sum(axis=1)


def _poisson_times(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    n = rng.poisson(rate * (end - start))
    return np.sort(rng.uniform(start, end, n))


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


class _Mixer:
    """Fixed random linear maps from latent cue signals to the observed feature spaces."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
        # audio latents: articulation, emphasis, fast modulation, slow oscillation + 4 nuisance
        self.audio = (
            np.linalg.qr(rng.standard_normal((cfg.audio_dim, cfg.audio_dim)))[0][:, :8].T * 2.0
        )
        # visual latents: articulation (mouth), eyebrow pulses, smile + 3 nuisance
        self.visual = (
            np.linalg.qr(rng.standard_normal((cfg.visual_dim, cfg.visual_dim)))[0][:, :6].T * 2.0
        )
        self.text_proto = {c: rng.standard_normal(cfg.text_dim) for c in CLASS_CUES}
        self.speaker_audio = rng.standard_normal((cfg.n_speakers, cfg.audio_dim)) * 0.3
        self.speaker_visual = rng.standard_normal((cfg.n_speakers, cfg.visual_dim)) * 0.3


def _clip(cfg: SyntheticConfig, mix: _Mixer, rng: np.random.Generator, label: str, speaker: int):
    short_hz, long_hz, in_sync, valence = CLASS_CUES[label]
    duration = rng.uniform(cfg.min_duration_s, cfg.max_duration_s)
    tau = rng.uniform(-cfg.max_offset_s, cfg.max_offset_s)  # F_V(t + τ) shows what F_A(t) hears
    margin = cfg.max_offset_s + 0.5
    syllables = _poisson_times(rng, 4.0, -margin, duration + margin)
    emphasis = _poisson_times(rng, 1.5, -margin, duration + margin)
    brows = emphasis if in_sync else _poisson_times(rng, 1.5, -margin, duration + margin)
    phase_s, phase_l = rng.uniform(0, 2 * np.pi, 2)
    amp_s, amp_l = rng.uniform(0.7, 1.3, 2)

    t_a = np.arange(int(duration * cfg.audio_fps)) / cfg.audio_fps
    audio_latent = np.stack(
        [
            _standardise(_bumps(t_a, syllables, 0.04)),
            _standardise(_bumps(t_a, emphasis, 0.05)),
            amp_s * np.sqrt(2) * np.sin(2 * np.pi * short_hz * t_a + phase_s),
            amp_l * np.sqrt(2) * np.sin(2 * np.pi * long_hz * t_a + phase_l),
            *rng.standard_normal((4, len(t_a))),
        ],
        axis=1,
    )
    audio = audio_latent @ mix.audio + mix.speaker_audio[speaker]
    audio += rng.standard_normal(audio.shape) * cfg.noise

    # The video's frame k shows the scene at time k/fps - τ, so that F_V(t + τ) ~ F_A(t).
    t_v = np.arange(int(duration * cfg.visual_fps)) / cfg.visual_fps - tau
    smile = SMILE.get(label, 0.0) + 0.3 * rng.standard_normal()
    visual_latent = np.stack(
        [
            _standardise(_bumps(t_v, syllables, 0.04)),
            _standardise(_bumps(t_v, brows, 0.05)),
            np.full(len(t_v), smile),
            *rng.standard_normal((3, len(t_v))),
        ],
        axis=1,
    )
    visual = visual_latent @ mix.visual + mix.speaker_visual[speaker]
    visual += rng.standard_normal(visual.shape) * cfg.noise

    text = cfg.text_signal * mix.text_proto[label] + rng.standard_normal(cfg.text_dim)
    val = float(np.clip(valence + 0.1 * rng.standard_normal(), -1, 1))
    return audio.astype(np.float32), visual.astype(np.float32), text.astype(np.float32), tau, val


def speaker_split(speaker: int, n_speakers: int) -> str:
    """Speaker-independent split: the last two speakers are test, the two before them val."""
    if speaker >= n_speakers - 2:
        return "test"
    if speaker >= n_speakers - 4:
        return "val"
    return "train"


def generate_corpus(out_dir: str | Path, cfg: SyntheticConfig | None = None) -> Path:
    """Write the corpus as a feature store: labels.csv, offsets.csv, audio/ visual/ text/."""
    cfg = cfg or SyntheticConfig()
    out = Path(out_dir)
    rng = np.random.default_rng(cfg.seed)
    mix = _Mixer(cfg, rng)
    rows, offsets = [], []
    index = 0
    for label in MER_CLASSES:
        for _ in range(cfg.clips_per_class):
            speaker = index % cfg.n_speakers
            name = f"syn_{index:05d}"
            index += 1
            audio, visual, text, tau, valence = _clip(cfg, mix, rng, label, speaker)
            write_stream(
                clip_path(out, "audio", name),
                StreamFeatures(audio, cfg.audio_fps, record={"name": "synthetic"}),
            )
            if rng.random() >= cfg.p_missing_visual:
                write_stream(
                    clip_path(out, "visual", name),
                    StreamFeatures(visual, cfg.visual_fps, record={"name": "synthetic"}),
                )
            if rng.random() >= cfg.p_missing_text:
                write_stream(
                    clip_path(out, "text", name),
                    StreamFeatures(text, 0.0, record={"name": "synthetic"}),
                )
            split = speaker_split(speaker, cfg.n_speakers)
            rows.append([name, label, f"{valence:.4f}", f"spk{speaker:02d}", split])
            offsets.append([name, f"{tau:.6f}", f"{-1000 * tau:.3f}"])
    with atomic_write(out / "labels.csv", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "discrete", "valence", "speaker", "split"])
        w.writerows(rows)
    with atomic_write(out / "offsets.csv", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "tau_s", "audio_lag_ms"])
        w.writerows(offsets)
    write_json(out / "synthetic.json", asdict(cfg))
    return out


def read_offsets(corpus: str | Path) -> dict[str, float]:
    """The true τ (seconds, paper convention) of every clip of a generated corpus."""
    from esva.tables import read_table

    rows = read_table(Path(corpus) / "offsets.csv", ("name", "tau_s"))
    return {name: float(row["tau_s"]) for name, row in rows.items()}
