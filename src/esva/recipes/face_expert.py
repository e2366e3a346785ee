"""The ``face-expert`` recipe: esva's FER+ face-expression CNN, trained on the one engine.

The data (FER+ train/valid through :mod:`esva.data.ferplus`), the model
(:class:`esva.encoders.face_expert.FaceExpertNet`), the per-batch loss (cross-entropy against
the annotators' vote distribution: soft targets), the per-epoch validation (FER+ valid accuracy
against the majority label, the score the best epoch is chosen by) and ``save_best`` (one
temperature fitted on FER+ valid for the fp16 weights as shipped, then ``model.safetensors`` in
fp16 + ``config.json``: the folder ``esva.encoders.face_expert`` loads) are this module's; the
loop (AdamW, warm-up + cosine, checkpoints and exact resume, metrics.jsonl) is
:mod:`esva.recipes.engine`'s.

Augmentation is drawn per batch from a generator seeded by (seed, epoch, the batch's image
indices), so a resumed run augments exactly as an uninterrupted one. ``standard`` is the
shipped expert's: flip, rotate +-10 deg, scale 0.9-1.1, shift +-4 px, brightness +-0.15,
contrast 0.8-1.2, in one affine resample; ``strong`` (issue 17's transfer candidates) adds
resolution loss, blur, gamma, noise, JPEG and occlusions (:func:`augment_strong`).

Config (YAML, see ``configs/face_expert.yaml``)::

    recipe: face-expert
    model: {dropout: 0.3}
    data:  {root: ../../shared/data/face_images/ferplus, cache: ../runs/ferplus_cache}
    train: {epochs: 10, batch_size: 64, lr: 0.002, weight_decay: 0.05, warmup_share: 0.15,
            grad_clip: 0, threads: 1, out_dir: runs/face_expert}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from esva.data.ferplus import EMOTIONS, FerPlusSplit, load_kept
from esva.encoders.face_expert import CLASSES, FaceExpertNet, fit_temperature, normalise
from esva.errors import EsvaError
from esva.io import atomic_dir, read_json, write_json
from esva.recipes.config import TRAIN_LIMITS, SectionedRunConfig
from esva.recipes.engine import METRICS, Engine, LoopConfig, Step, TrainResult
from esva.recipes.sampler import EpochSampler
from esva.settings import AT_LEAST_ONE, SHARE, Range

__all__ = [
    "FaceDataConfig",
    "FaceModelConfig",
    "FaceRunConfig",
    "FaceTrainConfig",
    "augment",
    "augment_strong",
    "predict_logits",
    "soft_cross_entropy",
    "train",
]

STANDARD_AUGMENTATION = (
    "flip, rotate +-10 deg, scale 0.9-1.1, shift +-4 px, brightness +-0.15, contrast 0.8-1.2"
)


# --- config -------------------------------------------------------------------------------------
@dataclass
class FaceModelConfig:
    dropout: float = 0.3
    init: str | None = None  # start from these weights (a face-expert folder); None: random

    LIMITS: ClassVar[dict[str, Any]] = {"dropout": Range(0, 1, high_open=True)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FaceDataConfig:
    root: str = "ferplus"  # the FER+ folder (FER2013Train/, FER2013Valid/ with label.csv)
    cache: str | None = None  # folder for the decoded uint8 arrays (None: decode every run)


@dataclass
class FaceTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05  # AdamW, on the conv/linear matrices (the engine's groups)
    warmup_share: float = 0.15  # share of all optimizer steps spent warming up, then cosine
    grad_clip: float = 0.0  # 0: no clipping (the shipped expert was trained without)
    seed: int = 0
    augmentation: str = "standard"  # "standard" (the shipped expert's) or "strong"
    bf16: bool = True  # bf16 autocast, fp32 master weights (2.4x faster on AVX512-BF16 CPUs)
    deterministic: bool = True  # torch.use_deterministic_algorithms
    patience: int | None = None  # early stopping: epochs without a better valid accuracy
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: epochs only)
    eval_batch_size: int = 512
    threads: int | None = None  # torch CPU threads (None: torch's default)
    out_dir: str = "runs/face_expert"
    cpu: bool = False
    progress: bool = True

    # What the CLI's last line calls the validation score (not a key: there is one choice).
    monitor: ClassVar[str] = "FER+ accuracy"
    LIMITS: ClassVar[dict[str, Any]] = {
        **TRAIN_LIMITS,
        "warmup_share": SHARE,
        "augmentation": ("standard", "strong"),
        "patience": AT_LEAST_ONE,
        "eval_batch_size": AT_LEAST_ONE,
        "threads": AT_LEAST_ONE,
    }


@dataclass
class FaceRunConfig(SectionedRunConfig):
    model: FaceModelConfig = field(default_factory=FaceModelConfig)
    data: FaceDataConfig = field(default_factory=FaceDataConfig)
    train: FaceTrainConfig = field(default_factory=FaceTrainConfig)

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path | None = None) -> FaceRunConfig:
        sections = (FaceModelConfig, FaceDataConfig, FaceTrainConfig)
        return cls(*cls.read_sections(raw, source, "face-expert", *sections))

    def resolve_paths(self, folder: Path) -> None:
        for section, key in (("data", "root"), ("data", "cache"), ("model", "init")):
            part = getattr(self, section)
            value = getattr(part, key)
            if value and not Path(value).is_absolute():
                setattr(part, key, str((folder / value).resolve()))


# --- augmentation -------------------------------------------------------------------------------
def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation on (B, 1, 48, 48) in [0, 1]: flip, rotate +-10 deg, scale 0.9-1.1,
    shift +-4 px, brightness +-0.15 and contrast 0.8-1.2, all in one affine resample."""
    b = x.shape[0]
    u = torch.rand(b, 6, generator=gen, device=x.device)
    angle = (u[:, 0] * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * u[:, 1]
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=gen, device=x.device) * 2 - 1) * (4 / 24)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.8 + 0.4 * u[:, 3]).view(b, 1, 1, 1)
    bright = ((u[:, 4] * 2 - 1) * 0.15).view(b, 1, 1, 1)
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur of (B, 1, H, W) with standard deviations ``sigma`` (B,) px."""
    b = x.shape[0]
    r = torch.arange(-3, 4, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (B, 7)
    k2 = (k1[:, :, None] * k1[:, None, :]).unsqueeze(1)  # (B, 1, 7, 7)
    y = F.conv2d(F.pad(x.transpose(0, 1), (3, 3, 3, 3), mode="replicate"), k2, groups=b)
    return y.transpose(0, 1)


def augment_strong(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Strong batch augmentation on (B, 1, 48, 48) in [0, 1], for transfer beyond FER+:

    * geometry (one affine resample): flip, rotate +-20 deg, zoom 0.8-1.25 with aspect 0.9-1.1
      and shift +-6 px (a random resized crop around the face);
    * resolution: 30 % of faces down to 16-36 px and back up (small or soft tracker crops);
    * blur: 30 % get a Gaussian blur, sigma 0.3-1.3 px;
    * photometry: gamma 0.6-1.6, contrast 0.6-1.4, brightness +-0.2; Gaussian noise on 25 %;
    * JPEG: 30 % re-encoded at quality 15-75 (OpenCV);
    * occlusion: 25 % lose the lower face from a random row in 28-36 down (a talking or covered
      mouth: the label must come from the brows and eyes too), 20 % a random 8-20 px block.
    """
    import cv2

    b, _, h, w = x.shape
    dev = x.device
    u = torch.rand(b, 16, generator=gen, device=dev)
    angle = (u[:, 0] * 2 - 1) * math.radians(20)
    zoom = torch.exp((u[:, 1] * 2 - 1) * math.log(1.25))  # > 1: the face fills more
    aspect = 0.9 + 0.2 * u[:, 2]
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=gen, device=dev) * 2 - 1) * (6 / 24)
    sx, sy = aspect / zoom, 1.0 / zoom
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * sx * flip, -sin * sy, shift[:, 0]], 1),
            torch.stack([sin * sx * flip, cos * sy, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    low = u[:, 4] < 0.3
    if low.any():
        side = int(16 + 20 * float(u[0, 5]))  # one size per batch (interpolate needs one)
        small = F.interpolate(x[low], size=(side, side), mode="area")
        x[low] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    blur = u[:, 6] < 0.3
    if blur.any():
        x[blur] = _gaussian_blur(x[blur], 0.3 + 1.0 * u[blur, 7])
    gamma = torch.exp((u[:, 8] * 2 - 1) * math.log(1.6)).view(b, 1, 1, 1)
    x = x.clamp(1e-4, 1) ** gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.6 + 0.8 * u[:, 9]).view(b, 1, 1, 1)
    bright = ((u[:, 10] * 2 - 1) * 0.2).view(b, 1, 1, 1)
    x = (x - mean) * contrast + mean + bright
    noisy = (u[:, 11] < 0.25).float().view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen, device=dev)
    x = (x + noisy * 0.04 * torch.rand(b, 1, 1, 1, generator=gen, device=dev) * noise).clamp(0, 1)
    for i in torch.nonzero(u[:, 12] < 0.3).flatten().tolist():
        q = int(15 + 60 * float(u[i, 13]))
        img = (x[i, 0] * 255).round().to(torch.uint8).cpu().numpy()
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            x[i, 0] = torch.from_numpy(dec).to(dev).float() / 255
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    occ = torch.rand(b, 6, generator=gen, device=dev)
    lower = (occ[:, 0] < 0.25).view(b, 1, 1) & (rows >= (28 + 8 * occ[:, 1]).view(b, 1, 1))
    size = (8 + 12 * occ[:, 2]).view(b, 1, 1)
    y0, x0 = (occ[:, 3] * (h - 8)).view(b, 1, 1), (occ[:, 4] * (w - 8)).view(b, 1, 1)
    block = (occ[:, 5] < 0.2).view(b, 1, 1) & (rows >= y0) & (rows < y0 + size)
    block = block & (cols >= x0) & (cols < x0 + size)
    hole = (lower | block).unsqueeze(1)
    fill = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
    return torch.where(hole, fill.expand_as(x), x)


AUGMENTATIONS = {"standard": augment, "strong": augment_strong}


def batch_generator(seed: int, epoch: int, indices: torch.Tensor, device) -> torch.Generator:
    """A generator for one batch's augmentation, fixed by (seed, epoch, its image indices)."""
    entropy = [seed, epoch, *indices.tolist()]
    state = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


# --- data, loss, prediction ---------------------------------------------------------------------
class FerPlusImages(Dataset):
    """Kept FER+ images as training items: uint8 image, soft target, index."""

    def __init__(self, split: FerPlusSplit) -> None:
        self.images = torch.from_numpy(split.images)
        self.targets = torch.from_numpy(split.targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "target": self.targets[i], "index": i}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k target_k log softmax(logits)_k`` (vote distributions)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=1), dim=1).mean()


@torch.no_grad()
def predict_logits(net: torch.nn.Module, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    """fp32 logits of uint8 ``(N, 48, 48)`` images (eval mode, no augmentation), on the CPU."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s : s + batch]).float().div(255).unsqueeze(1).to(device)
        out.append(net(normalise(x))[1].float().cpu())
    return torch.cat(out)


def _history(records: list[dict]) -> list[dict]:
    """The engine's per-epoch records in the shipped config's form."""
    return [
        {
            "epoch": r["epoch"],
            "loss": r.get("train_loss"),
            "valid_acc": r.get("val_accuracy"),
            "seconds": round(float(r.get("seconds", 0.0)), 1),
        }
        for r in records
    ]


def save_best(
    model: torch.nn.Module,
    directory: Path,
    run: FaceRunConfig,
    valid: FerPlusSplit,
    epoch: int,
    history: list[dict],
) -> None:
    """The best epoch's face-expert folder: fp16 ``model.safetensors`` + ``config.json``.

    The temperature is fitted on FER+ valid with the fp16 weights as shipped (what users run),
    on a copy: the training model is not touched.
    """
    from safetensors.torch import save_file

    tcfg = run.train
    state16 = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    net = FaceExpertNet(dropout=run.model.dropout)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state16.items()})
    logits = predict_logits(net, valid.images, tcfg.eval_batch_size)
    temperature = fit_temperature(logits, torch.from_numpy(valid.labels))
    accuracy = float((logits.argmax(1).numpy() == valid.labels).mean())
    config = {
        "architecture": FaceExpertNet.describe(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "classes": list(CLASSES),
        "temperature": round(temperature, 6),
        "input": {"size": 48, "grey": True, "normalisation": "(x / 255 - 0.5) / 0.25"},
        "training": {
            "data": "FER+ FER2013Train (majority in the 8 emotions), soft vote targets",
            "init": Path(run.model.init).name if run.model.init else None,
            "epochs": tcfg.epochs,
            "best_epoch": epoch,
            "batch": tcfg.batch_size,
            "optimizer": (
                f"AdamW lr {tcfg.lr} wd {tcfg.weight_decay} (matrices), linear warm-up "
                f"{tcfg.warmup_share:.0%} then cosine"
                + (f", grad clip {tcfg.grad_clip}" if tcfg.grad_clip else "")
            ),
            "augmentation": (
                STANDARD_AUGMENTATION
                if tcfg.augmentation == "standard"
                else " ".join((augment_strong.__doc__ or "").split())
            ),
            "seed": tcfg.seed,
            "threads": tcfg.threads,
            "precision": "bf16 autocast, fp32 weights" if tcfg.bf16 else "fp32",
            "history": _history(history),
            "recipe": "face-expert (esva.recipes.face_expert on esva.recipes.engine)",
            "command": "esva train --config configs/face_expert.yaml",
        },
        "scores": {"ferplus_valid_accuracy": round(accuracy, 4)},
    }
    with atomic_dir(directory) as tmp:
        save_file({k: v.contiguous() for k, v in state16.items()}, str(tmp / "model.safetensors"))
        write_json(tmp / "config.json", config)


def _fingerprint(run: dict) -> dict:
    """What must not change between a run and its resume: all but the epoch budget, where the
    run folder and the decoded cache are, and what only affects speed or reporting."""
    d = json.loads(json.dumps(run))
    for key in ("epochs", "out_dir", "progress", "threads", "checkpoint_every", "patience"):
        d["train"].pop(key, None)
    d["train"].pop("eval_batch_size", None)
    d["data"].pop("cache", None)
    return d


def _read_metrics(out_dir: Path) -> list[dict]:
    path = out_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(run: FaceRunConfig, resume: bool = False) -> TrainResult:
    """Train the face expert as configured; returns where the best folder is and its score."""
    tcfg = run.train
    # epochs, lr, out_dir, weight_decay, grad_clip, seed, warmup_share, checkpoint_every,
    # patience, cpu, progress, threads: from the train section.
    loop = LoopConfig.from_section(tcfg)
    engine = Engine(loop, run.to_dict(), _fingerprint, resume)
    device = engine.accelerator.device

    train_set = load_kept(run.data.root, "train", run.data.cache)
    valid = load_kept(run.data.root, "valid", run.data.cache)
    if len(train_set) < tcfg.batch_size:
        raise EsvaError(
            f"FER+ train has {len(train_set)} usable images, fewer than one batch "
            f"({tcfg.batch_size})",
            run.data.root,
        )
    if tuple(CLASSES) != EMOTIONS:  # the net's outputs must be FER+'s 8 emotions, in order
        raise EsvaError(f"face expert classes {CLASSES} are not FER+'s {EMOTIONS}")

    net = FaceExpertNet(dropout=run.model.dropout)
    if run.model.init:
        from esva.encoders.face_expert import load_asset

        net.load_state_dict(load_asset(Path(run.model.init), verify=False)[0])
    net = net.to(memory_format=torch.channels_last)

    sampler = EpochSampler(train_set.labels.tolist(), tcfg.seed)
    loader = DataLoader(
        FerPlusImages(train_set),
        batch_size=tcfg.batch_size,
        sampler=sampler,
        drop_last=True,  # every step a full batch, as the shipped expert was trained
        generator=torch.Generator(),  # see esva.recipes.train_esva.make_loader
    )
    aug = AUGMENTATIONS[tcfg.augmentation]
    out_dir = Path(tcfg.out_dir)

    def loss_fn(model: torch.nn.Module, batch: dict) -> Step:
        images = batch["image"].to(device)
        gen = batch_generator(tcfg.seed, sampler.epoch, batch["index"], device)
        x = aug(images.float().div(255).unsqueeze(1), gen)
        x = normalise(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.bf16):
            _, logits = model(x)
        loss = soft_cross_entropy(logits, batch["target"].to(device))
        return Step(loss, {"loss": float(loss.detach())})

    def validate(model: torch.nn.Module, accelerator) -> tuple[dict, float | None]:
        logits = predict_logits(accelerator.unwrap_model(model), valid.images, tcfg.eval_batch_size)
        accuracy = float((logits.argmax(1).numpy() == valid.labels).mean())
        current["record"] = {"epoch": sampler.epoch + 1, "val_accuracy": accuracy}
        return {"val_accuracy": accuracy}, accuracy

    current: dict[str, Any] = {}

    def best(model: torch.nn.Module, directory: Path) -> None:
        # metrics.jsonl holds the epochs before this one (the engine writes it after save_best).
        history = [*_read_metrics(out_dir), current["record"]]
        save_best(model, directory, run, valid, current["record"]["epoch"], history)

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if tcfg.deterministic and device.type == "cuda":  # cuBLAS refuses without a fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # On an accelerator some kernels have no deterministic version: warn there, do not stop.
    torch.use_deterministic_algorithms(tcfg.deterministic, warn_only=device.type != "cpu")
    try:
        result = engine.fit(
            net,
            loader,
            sampler,
            loss_fn,
            validate,
            best,
            loss_key="train_loss",
            val_keys=("val_accuracy",),
        )
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    if result.main_process:  # the best folder's history: every epoch the run trained
        config_path = result.best_dir / "config.json"
        config = read_json(config_path)
        config["training"]["history"] = _history(result.history)
        write_json(config_path, config)
    return result
