"""A feature space in which audio and face frames can be compared (what Eq. 4-5 need).

Eq. 4-5 compare F_A(t) with F_V(t + τ), which only means something when both live in one space.
This module builds that space from cheap frame features and two small learned linear heads:

* **audio**: a log-mel spectrogram (40 bands, 60-7600 Hz, 40 ms Hann windows) whose hop is the
  alignment grid's step, so audio frame ``k`` is at ``start_s + k / fps`` on the container clock;
* **visual**: the grey mouth crop *and* the grey face crop of the face tracker
  (``FaceTrack.mouths``, ``FaceTrack.crops``), each area-pooled to 12 x 12 pixels, interpolated
  from each video frame's real timestamp onto the audio's grid (Eq. 3; by timestamps, so
  variable frame rates and a video stream that starts late are handled);
* **projection** (:meth:`SyncSpace.project`): each raw dimension is z-scored over the segment
  being aligned (removes the speaker's face, the lighting and the recording level), frames at
  ``±step, ±2·step, ...`` are stacked (``context``) so that a linear head can form temporal
  filters (lip *motion*, spectral *change*), and :class:`esva.align.SyncHeads` map both to
  ``sync_dim`` dimensions.

The heads are trained SyncNet-style (Chung & Zisserman 2016), without any emotion label, by the
``sync-space`` recipe on the training engine (:mod:`esva.recipes.sync_space`; ``esva train
--config configs/sync_space.yaml``): on a segment of a real talking-face clip, the in-sync
audio/video pair is the positive; the same clip's video shifted by ≥ 200 ms, and the other
clips' videos in the batch, are the negatives. The score of a pair is Eq. 5's normalised
correlation C, so the training objective is the quantity the offset estimator maximises.

Mouth, whole face or both was decided by measurement (with the loop these heads had before the
engine): heads trained on 3 of 4
speaker folds of the 36 real clips, injected offsets −400..+400 ms (80-ms steps) on the held-out
fold, share of errors within one video frame (33 ms) / median error: mouth 90.7 % / 2.3 ms,
face 90.2 % / 2.5 ms, mouth + face 93.9 % / 2.0 ms. The mouth alone misses profile views (the
tracker's mouth box is a fixed part of the face box), the face alone dilutes the lips with
the rest of the face; together the failures rarely coincide. (``--visual`` of
``benchmarks/train_sync_space.py`` trains the variants.)

The trained heads ship under ``esva/assets/sync/`` (``heads.safetensors`` + ``config.json``,
which records the safetensors file's sha256 and the training recipe); :func:`load_sync_space`
verifies the hash before loading.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from esva.align.heads import SyncHeads
from esva.align.offsets import (
    OffsetEstimate,
    estimate_offset,
    global_xcorr,
    shifted_products,
    standardize,
)
from esva.errors import EsvaError
from esva.hashing import file_sha256
from esva.io import atomic_path, write_json
from esva.media.track import to_grid  # Eq. 3 by timestamps (media's: coverage uses it too)
from esva.media.types import AudioClip, FaceTrack
from esva.settings import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "sync"
WEIGHTS_FILE = "heads.safetensors"
CONFIG_FILE = "config.json"
VISUAL_KINDS = ("mouth", "face", "mouth+face")


@dataclass
class SyncSpaceConfig:
    """The frame features and the heads' shape (stored in the shipped ``config.json``)."""

    fps: float = 50.0  # the alignment grid (Whisper's and the prosody encoder's frame rate)
    sample_rate: int = 16_000
    n_mels: int = 40
    n_fft: int = 1024
    win_s: float = 0.04  # analysis window (40 ms: one 25-fps video frame)
    fmin: float = 60.0
    fmax: float = 7600.0
    visual: str = "mouth+face"  # "mouth" (FaceTrack.mouths), "face" (.crops) or both
    pixels: int = 12  # crops are area-pooled to pixels x pixels
    context: int = 3  # frames stacked on each side of the centre frame
    context_step: int = 2  # ... every this many grid frames (2 at 50 Hz: 40 ms apart)
    sync_dim: int = 16

    # What a run config's ``model`` section may hold (esva.settings.check_fields).
    LIMITS: ClassVar[dict[str, Any]] = {
        "fps": POSITIVE,
        "sample_rate": AT_LEAST_ONE,
        "n_mels": AT_LEAST_ONE,
        "n_fft": AT_LEAST_ONE,
        "win_s": POSITIVE,
        "fmin": NON_NEGATIVE,
        "fmax": POSITIVE,
        "visual": VISUAL_KINDS,
        "pixels": AT_LEAST_ONE,
        "context": NON_NEGATIVE,
        "context_step": AT_LEAST_ONE,
        "sync_dim": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        if self.visual not in VISUAL_KINDS:
            raise ValueError(f"visual must be one of {VISUAL_KINDS}, got {self.visual!r}")

    @property
    def hop(self) -> int:
        """Audio samples per grid frame."""
        hop = self.sample_rate / self.fps
        if abs(hop - round(hop)) > 1e-9:
            raise ValueError(f"fps {self.fps} does not divide the sample rate {self.sample_rate}")
        return round(hop)

    @property
    def taps(self) -> int:
        return 2 * self.context + 1

    @property
    def audio_dim(self) -> int:
        return self.n_mels * self.taps

    @property
    def images(self) -> tuple[str, ...]:
        """Which crops the visual features are made of, in order."""
        return tuple(self.visual.split("+"))

    @property
    def visual_dim(self) -> int:
        return len(self.images) * self.pixels * self.pixels * self.taps


@dataclass
class SyncFeatures:
    """Raw audio and visual frame features of one clip on one grid (before the heads).

    Frame ``k`` is at ``start_s + k / fps`` on the container clock. ``visual_mask`` is False
    where no face was tracked or the video does not cover that instant.
    """

    audio: np.ndarray  # (T, n_mels) float32 log-mel
    visual: np.ndarray  # (T, images·pixels²) float32 pooled grey pixels in [0, 1]
    audio_mask: np.ndarray  # (T,) bool
    visual_mask: np.ndarray  # (T,) bool
    fps: float
    start_s: float

    def __len__(self) -> int:
        return len(self.audio)

    def slice(self, start: int, stop: int) -> SyncFeatures:
        """Frames ``[start, stop)`` (e.g. one streaming window)."""
        return SyncFeatures(
            self.audio[start:stop],
            self.visual[start:stop],
            self.audio_mask[start:stop],
            self.visual_mask[start:stop],
            self.fps,
            self.start_s + start / self.fps,
        )


# ---------------------------------------------------------------------------------------------
# Frame features


_MEL_CACHE: dict[tuple, torch.Tensor] = {}


def _mel_filters(config: SyncSpaceConfig) -> torch.Tensor:
    key = (config.n_fft, config.n_mels, config.fmin, config.fmax, config.sample_rate)
    if key not in _MEL_CACHE:
        from esva.media.mel import mel_filter_bank  # transformers' formula, without its import

        fb = mel_filter_bank(
            config.n_fft // 2 + 1, config.n_mels, config.fmin, config.fmax, config.sample_rate
        )
        _MEL_CACHE[key] = torch.from_numpy(fb.astype(np.float32))  # (F, n_mels)
    return _MEL_CACHE[key]


def log_mel(samples: np.ndarray, config: SyncSpaceConfig) -> np.ndarray:
    """(N,) 16 kHz samples -> (ceil(N / hop), n_mels) log-mel frames, frame k centred at k·hop.

    Whisper's recipe (log10 power, floored 8 decades below the clip's maximum) at the grid's hop.
    """
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    hop, win = config.hop, round(config.win_s * config.sample_rate)
    if len(x) == 0:
        return np.zeros((0, config.n_mels), np.float32)
    if len(x) <= config.n_fft // 2:  # reflect padding needs more samples than half a window
        x = F.pad(x, (0, config.n_fft // 2 + 1 - len(x)))
    spec = torch.stft(
        x,
        config.n_fft,
        hop_length=hop,
        win_length=win,
        window=torch.hann_window(win),
        center=True,
        return_complex=True,
    )
    power = spec.abs() ** 2  # (F, frames)
    mel = (_mel_filters(config).T @ power).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.max() - 8.0)
    n = math.ceil(len(samples) / hop)
    return mel.T[:n].contiguous().numpy()


def pooled_pixels(crops: np.ndarray, pixels: int) -> np.ndarray:
    """(N, S, S, 1 or 3) uint8 crops -> (N, pixels²) float32 in [0, 1] (grey, area-pooled)."""
    out = np.zeros((len(crops), pixels * pixels), np.float32)
    for i, crop in enumerate(crops):
        grey = crop[..., 0] if crop.shape[-1] == 1 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (pixels, pixels), interpolation=cv2.INTER_AREA)
        out[i] = small.reshape(-1) / 255.0
    return out


def _stack_context(x: torch.Tensor, context: int, step: int) -> torch.Tensor:
    """(B, T, D) -> (B, T, D·(2·context + 1)): the frames at t + j·step, j = -context..context.

    Zero padding beyond the ends (the inputs are z-scored, so zero is the mean frame).
    """
    if context == 0:
        return x
    pad = context * step
    xp = F.pad(x, (0, 0, pad, pad))
    t = x.shape[1]
    taps = [xp[:, pad + j * step : pad + j * step + t] for j in range(-context, context + 1)]
    return torch.cat(taps, dim=-1)


# ---------------------------------------------------------------------------------------------
# The space


class SyncSpace(torch.nn.Module):
    """Frame features + trained :class:`SyncHeads`: audio and face frames -> one space."""

    def __init__(self, config: SyncSpaceConfig | None = None) -> None:
        super().__init__()
        self.config = config or SyncSpaceConfig()
        c = self.config
        self.heads = SyncHeads(c.audio_dim, c.visual_dim, c.sync_dim)
        self.meta: dict = {}  # what config.json recorded (training recipe, sha256, ...)

    def audio_features(self, audio: AudioClip) -> np.ndarray:
        """(T, n_mels) log-mel frames of ``audio``; frame k at ``audio.start_s + k / fps``."""
        c = self.config
        if audio.sample_rate != c.sample_rate:
            raise ValueError(f"audio must be {c.sample_rate} Hz, got {audio.sample_rate}")
        return log_mel(audio.samples, c)

    def features(self, audio: AudioClip, track: FaceTrack) -> SyncFeatures:
        """Raw frame features of a clip on the audio's grid (see the module docstring)."""
        c = self.config
        mel = self.audio_features(audio)
        grid = audio.start_s + np.arange(len(mel)) / c.fps
        parts = []
        for kind in c.images:
            crops = track.mouths if kind == "mouth" else track.crops
            if crops is None:
                raise ValueError("the face track has no mouth crops (FaceTrackerConfig.mouth_size)")
            parts.append(pooled_pixels(crops, c.pixels))
        pix = np.concatenate(parts, axis=1)
        visual, vmask = to_grid(pix, np.asarray(track.timestamps_s), np.asarray(track.mask), grid)
        return SyncFeatures(
            audio=mel,
            visual=visual,
            audio_mask=np.ones(len(mel), bool),
            visual_mask=vmask,
            fps=c.fps,
            start_s=float(audio.start_s),
        )

    def embed(
        self, audio: torch.Tensor, visual: torch.Tensor, ma: torch.Tensor, mv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched (B, T, ·) raw features -> (B, T, sync_dim) each (differentiable).

        Every raw dimension is z-scored over the valid frames of each sequence first, so what the
        heads see does not depend on the speaker's face, the light or the recording level.
        """
        c = self.config
        d_a, d_v = audio.shape[-1], visual.shape[-1]
        # standardize() also divides by √d; undo that: the heads want unit-variance inputs.
        a = standardize(audio, ma) * math.sqrt(d_a)
        v = standardize(visual, mv) * math.sqrt(d_v)
        a = _stack_context(a, c.context, c.context_step)
        v = _stack_context(v, c.context, c.context_step)
        za, zv = self.heads(a, v)
        return za * ma.unsqueeze(-1), zv * mv.unsqueeze(-1)

    @torch.no_grad()
    def project(self, feats: SyncFeatures) -> tuple[np.ndarray, np.ndarray]:
        """One clip's features -> ((T, sync_dim) audio, (T, sync_dim) visual) numpy arrays."""
        self.eval()
        a = torch.from_numpy(feats.audio).unsqueeze(0)
        v = torch.from_numpy(feats.visual).unsqueeze(0)
        ma = torch.from_numpy(feats.audio_mask).unsqueeze(0)
        mv = torch.from_numpy(feats.visual_mask).unsqueeze(0)
        za, zv = self.embed(a, v, ma, mv)
        return za[0].numpy(), zv[0].numpy()

    def estimate_offset(
        self,
        feats: SyncFeatures,
        max_offset_ms: float,
        window_s: float,
        hop_s: float,
        alpha: float = 1.0,
        beta: float = 1.0,
    ) -> OffsetEstimate:
        """Project ``feats`` into the space and run Eq. 9 on them (τ within ±``max_offset_ms``).

        ``window_s``/``hop_s`` are Eq. 4's local windows; ``alpha``/``beta`` weigh Eq. 8.
        """
        za, zv = self.project(feats)
        return estimate_offset(
            za,
            zv,
            feats.fps,
            audio_mask=feats.audio_mask,
            visual_mask=feats.visual_mask,
            max_offset_s=max_offset_ms / 1000.0,
            window_s=window_s,
            hop_s=hop_s,
            alpha=alpha,
            beta=beta,
        )

    # ------------------------------------------------------------------ saving and loading

    def save(self, directory: str | Path, meta: dict | None = None) -> Path:
        """Write ``heads.safetensors`` and ``config.json`` (with the weights' sha256).

        The safetensors file gets one metadata key and contiguous float32 tensors, so the same
        weights always give the same bytes (``benchmarks/train_sync_space.py --check`` needs it).
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        weights = directory / WEIGHTS_FILE
        state = {k: v.detach().float().contiguous().clone() for k, v in self.state_dict().items()}
        with atomic_path(weights) as tmp:
            save_file(state, str(tmp), metadata={"format": "esva-sync-heads-v1"})
        digest = file_sha256(weights)
        record = {"config": asdict(self.config), "sha256": digest, **(meta or {})}
        write_json(directory / CONFIG_FILE, record)
        self.meta = record
        return weights

    @classmethod
    def load(cls, directory: str | Path) -> SyncSpace:
        """Load heads saved by :meth:`save`, checking the weights against the recorded sha256."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        try:
            record = json.loads(cfg_path.read_text(encoding="utf-8"))
            config = SyncSpaceConfig(**record["config"])
        except FileNotFoundError:
            raise EsvaError("sync-space config not found", cfg_path) from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EsvaError(f"sync-space config unreadable ({exc})", cfg_path) from None
        try:
            digest = file_sha256(weights)
        except FileNotFoundError:
            raise EsvaError("sync-space weights not found", weights) from None
        if digest != record.get("sha256"):
            raise EsvaError("sync-space weights fail their sha256 check (corrupted?)", weights)
        space = cls(config)
        try:
            space.load_state_dict(load_file(str(weights)), strict=True)
        except (SafetensorError, RuntimeError) as exc:
            raise EsvaError(f"sync-space weights unreadable ({exc})", weights) from None
        space.meta = record
        return space.eval()


_DEFAULT: SyncSpace | None = None


def load_sync_space(directory: str | Path | None = None) -> SyncSpace:
    """The shipped sync space (``esva/assets/sync``), or one saved in ``directory``."""
    global _DEFAULT
    if directory is not None:
        return SyncSpace.load(directory)
    if _DEFAULT is None:
        _DEFAULT = SyncSpace.load(ASSET_DIR)
    return _DEFAULT


# ---------------------------------------------------------------------------------------------
# Training pieces (SyncNet-style, self-supervised); the loop is the sync-space recipe's
# (esva.recipes.sync_space, on the training engine)


def segment_batch(
    clips: list[SyncFeatures],
    rng: np.random.Generator,
    batch: int,
    length: int,
    pixels: int,
    flip: bool = True,
    noise: bool = True,
) -> tuple[torch.Tensor, ...]:
    """``batch`` random segments of ``length`` frames (zero-padded and masked when shorter).

    ``flip``: mirror the crops of half the segments (left/right carries no timing); ``noise``:
    add stationary noise to half of the audio segments (random band levels); crops are
    ``pixels`` x ``pixels``. Returns (audio, visual, audio mask, visual mask) tensors.
    """
    p = pixels
    a_dim, v_dim = clips[0].audio.shape[1], clips[0].visual.shape[1]
    a = np.zeros((batch, length, a_dim), np.float32)
    v = np.zeros((batch, length, v_dim), np.float32)
    ma = np.zeros((batch, length), bool)
    mv = np.zeros((batch, length), bool)
    picks = rng.choice(len(clips), size=batch, replace=len(clips) < batch)
    for i, k in enumerate(picks):
        clip = clips[k]
        start = int(rng.integers(0, max(1, len(clip) - length + 1)))
        seg = clip.slice(start, start + length)
        n = len(seg)
        a[i, :n], v[i, :n], ma[i, :n], mv[i, :n] = (
            seg.audio,
            seg.visual,
            seg.audio_mask,
            seg.visual_mask,
        )
        if flip and rng.random() < 0.5:
            v[i, :n] = v[i, :n].reshape(n, -1, p, p)[..., ::-1].reshape(n, -1)
        if noise and rng.random() < 0.5:
            # Stationary noise: each band's log power cannot fall below a random floor, 0-30 dB
            # under the segment's median band level (what a fan, a hum or a street adds).
            floor = np.median(a[i, :n], axis=0) - rng.uniform(0.0, 3.0, size=a_dim)
            a[i, :n] = np.logaddexp(a[i, :n] * np.log(10), floor * np.log(10)) / np.log(10)
    return tuple(torch.from_numpy(x) for x in (a, v, ma, mv))


def contrastive_sync_loss(
    za: torch.Tensor,
    zv: torch.Tensor,
    ma: torch.Tensor,
    mv: torch.Tensor,
    *,
    max_shift: int,
    negative_shift: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over one positive and two kinds of negatives, scored by Eq. 5's C.

    For segment i the candidates are: its own video at τ = 0 (the positive); its own video at
    every |τ| in [negative_shift, max_shift] frames; every other segment's video at τ = 0.
    Shifts in (0, negative_shift) are left out: the features are smooth over a few frames, so
    those are neither clearly in sync nor clearly not (SyncNet's choice too). Returns (loss,
    share of segments whose positive scores highest).
    """
    za, zv = standardize(za, ma), standardize(zv, mv)
    c_own = global_xcorr(shifted_products(za, zv, ma, mv, max_shift))  # (B, 2K+1)
    taus = torch.arange(-max_shift, max_shift + 1)
    far = taus.abs() >= negative_shift
    # Other segments at τ = 0: a cosine over the frames where both are valid.
    both = (ma.unsqueeze(1) & mv.unsqueeze(0)).to(za.dtype)  # (B, B, T)
    dot = torch.einsum("itd,jtd->ijt", za, zv)
    ea = torch.einsum("itd,itd->it", za, za)
    ev = torch.einsum("jtd,jtd->jt", zv, zv)
    energy = torch.sqrt(
        ((ea.unsqueeze(1) * both).sum(-1) * (ev.unsqueeze(0) * both).sum(-1)).clamp(min=1e-12)
    )
    c_other = (dot * both).sum(-1) / energy  # (B, B); the diagonal is c_own at τ = 0
    b = za.shape[0]
    off_diag = c_other.masked_select(~torch.eye(b, dtype=torch.bool)).reshape(b, b - 1)
    logits = (
        torch.cat([c_own[:, max_shift : max_shift + 1], c_own[:, far], off_diag], dim=1)
        / temperature
    )
    logits = torch.nan_to_num(logits, nan=-1e4)
    target = torch.zeros(b, dtype=torch.long)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(1) == 0).float().mean()
    return loss, accuracy
