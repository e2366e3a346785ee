"""Find the main face in each video frame, keep one track across frames, and crop it.

The pipeline per frame:

1. **detect** (every ``detect_every``-th frame; boxes in between are interpolated) on a
   downscaled copy: the whole frame scaled so that the smallest face of interest (``min_face``)
   is 24 px, the Haar window; while tracking, first only a small square around the last box
   (``roi``), 3-4x cheaper. OpenCV's Haar cascade by default (no weights to fetch), or MTCNN
   (facenet-pytorch's P/R/O-net weights; more robust to pose and light, ~10x slower);
2. **associate**: the first face is the largest (ties broken towards the centre); after that the
   detection that overlaps the track most (IoU) continues it, so a second person does not steal
   the track; when the track has been lost for longer than ``max_gap_s`` a new main face is chosen;
3. **smooth** the box with an exponential moving average (Haar boxes jitter by a few pixels), and
   **interpolate** it linearly in time across frames that were not detected (skipped or missed,
   up to ``max_gap_s``);
4. **crop** from the full-resolution frame: the box is squared, expanded by ``margin`` and
   resized to ``size`` (RGB or grey); optionally a mouth crop from the lower third of the face.

A frame with no face gets ``mask`` False and a zero crop; a clip with no face at all gives a
:class:`FaceTrack` whose mask is all False (the caller treats the visual stream as absent).
:func:`iter_faces` streams (memory bounded by the frames within ``max_gap_s``);
:func:`track_faces` collects a clip into a :class:`FaceTrack`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

from esva.errors import EsvaError
from esva.media.types import FaceTrack, VideoFrames

# A detector maps an RGB uint8 frame (H, W, 3) to boxes (K, 5): x0, y0, x1, y1, score, in that
# frame's pixels. Any callable of that shape can be passed as ``FaceTrackerConfig.detector``.
Detector = Callable[[np.ndarray], np.ndarray]

# The frontal-face cascade's window is 24x24 pixels: the smallest face it can find. Frames are
# downscaled for detection only as far as keeps the smallest face of interest at this size.
FACE_PX = 24
# Near the last box the face is scaled to this size: just above the window, so that the search
# (a square twice the face's side) is a ~64-px image, a few times cheaper than the whole frame.
ROI_FACE_PX = 32


@dataclass
class FaceTrackerConfig:
    """Options for :func:`track_faces`.

    Defaults were chosen by measurement on the 18 RAVDESS Actor_01 videos (640x360, 25 fps
    sampling, 2 shared CPU cores): Haar with ``detect_every=3`` and ``roi`` finds the face in
    100 % of frames at ~4 clips/s per core including decoding, against ~0.7 clips/s when every
    frame is searched whole; ``detect_every=5`` is ~1.5x faster again but starts missing frames
    (99.6 %), and interpolating between sparser detections also halves the box jitter.
    """

    detector: str | Detector = "haar"  # "haar", "mtcnn", or a callable (see ``Detector``)
    size: int = 224  # side of the square output crops (e.g. 64 for FER CNNs, 224 for ViTs)
    grey: bool = False  # grey crops (S, S, 1) instead of RGB (S, S, 3)
    margin: float = 0.1  # square box side grows by this fraction on each side before cropping
    min_face: float = 0.2  # smallest face side to look for, as a fraction of the shorter side
    # Whole-frame searches run on a copy downscaled so that a min_face face is FACE_PX pixels
    # (Haar's window); detect_side (longer side, pixels) overrides that.
    detect_side: int | None = None
    roi: bool = True  # while tracking, search near the last box first (3-4x cheaper)
    detect_every: int = 3  # detect on every k-th frame; boxes between are interpolated
    smooth: float = 0.6  # EMA weight of a new detection (1.0 = no smoothing)
    iou_min: float = 0.3  # least overlap with the track for a detection to continue it
    max_gap_s: float = 0.5  # bridge (interpolate) detection gaps up to this long
    hold_s: float = 0.1  # at a track's ends, extend the nearest box this far in time
    mouth_size: int | None = None  # also crop the mouth region at this side (None: no mouths)
    mtcnn_weights: Path | None = None  # dir with pnet.pt, rnet.pt, onet.pt (None: esva.weights)
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)

    def __post_init__(self) -> None:
        if self.size < 8 or self.detect_every < 1 or not 0 < self.min_face <= 1:
            raise ValueError("size >= 8, detect_every >= 1 and 0 < min_face <= 1 are required")
        if self.detect_side is not None and self.detect_side < 32:
            raise ValueError(f"detect_side must be >= 32 pixels, got {self.detect_side}")
        if not 0.0 < self.smooth <= 1.0:
            raise ValueError(f"smooth must be in (0, 1], got {self.smooth}")


class FaceFrame(NamedTuple):
    """One frame of a face track, as streamed by :func:`iter_faces`."""

    time_s: float
    crop: np.ndarray  # (S, S, C) uint8, zeros when ``found`` is False
    box: np.ndarray  # (4,) float32 square crop box x0, y0, x1, y1 in frame pixels (NaN if none)
    found: bool  # a face crop is present (detected, interpolated or held)
    detected: bool  # the detector itself found the face in this frame
    mouth: np.ndarray | None  # (M, M, C) uint8 mouth crop when asked for


# ---------------------------------------------------------------------------------------------
# Detectors


_per_thread = threading.local()  # loaded cascades, one set per thread (OpenCV objects are not
# documented as thread-safe, and parsing the cascade XML costs ~20 ms: too much per clip)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (Viola-Jones) on an equalised grey frame."""

    def __init__(self, min_face: float = 0.2, scale_factor: float = 1.1, neighbours: int = 4):
        data = getattr(cv2, "data", None)
        path = Path(data.haarcascades) / "haarcascade_frontalface_default.xml" if data else None
        if path is None or not path.is_file():
            raise EsvaError(
                "OpenCV's Haar cascades are missing (opencv-python 5 dropped them); "
                "install 'opencv-python-headless<5'"
            )
        cache = _per_thread.__dict__.setdefault("cascades", {})
        if str(path) not in cache:
            cache[str(path)] = cv2.CascadeClassifier(str(path))
        self.cascade = cache[str(path)]
        self.min_face, self.scale_factor, self.neighbours = min_face, scale_factor, neighbours

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        side = max(int(self.min_face * min(grey.shape)), 12)
        boxes, votes = self.cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.neighbours, minSize=(side, side)
        )
        if len(boxes) == 0:
            return np.zeros((0, 5), np.float32)
        boxes = np.asarray(boxes, np.float32)
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x0, y0, x1, y1
        return np.column_stack([boxes, np.asarray(votes, np.float32)])


class PNet(nn.Module):
    """MTCNN proposal net (layer names match facenet-pytorch's ``pnet.pt``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """MTCNN refinement net (24x24 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # the weights were converted from Caffe/TF, which flatten channels-last and width-first
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """MTCNN output net (48x48 input; its landmark head is loaded but unused here)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)


def _nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """Greedy non-maximum suppression; ``mode="min"`` divides by the smaller area (MTCNN's last
    stage). torchvision's ``batched_nms`` is what facenet-pytorch uses, but torchvision does not
    work here, and OpenCV's ``NMSBoxes`` has no "min" mode."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (MTCNN's ``rerec``)."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply a net's box regression (offsets in units of the box size)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += reg * np.stack([w, h, w, h], axis=1)
    return boxes


class MtcnnDetector:
    """MTCNN (Zhang et al. 2016) with facenet-pytorch's weights, in plain torch + numpy.

    facenet-pytorch itself cannot be imported here: its ``detect_face`` module imports
    torchvision (for ``batched_nms`` and image transforms), which does not work in this
    environment. The three nets are small, so they are re-declared above with the same layer
    names and loaded from the wheel's ``data/{p,r,o}net.pt`` state dicts; the cascade below
    follows facenet-pytorch's ``detect_face`` for one image.
    """

    def __init__(
        self,
        weights_dir: Path | None = None,
        min_face: float = 0.2,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> None:
        if weights_dir is None:
            from esva.weights import fetch  # lazy: the Haar default needs no weights

            weights_dir = fetch("mtcnn")
        weights_dir = Path(weights_dir)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, name in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            path = weights_dir / f"{name}.pt"
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except FileNotFoundError:
                raise EsvaError("MTCNN weights not found", path) from None
            except (RuntimeError, OSError, EOFError) as exc:
                raise EsvaError(f"MTCNN weights unreadable ({exc})", path) from None
            net.eval()
        self.min_face, self.thresholds, self.factor = min_face, thresholds, factor

    @staticmethod
    def _tensor(images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> the nets' input: (N, 3, H, W) float in [-1, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        return (x - 127.5) * 0.0078125

    def _stage_crops(self, rgb: np.ndarray, boxes: np.ndarray, side: int) -> torch.Tensor:
        """Crops of ``boxes`` (clipped to the image) resized to ``side`` x ``side``.

        facenet-pytorch resizes with torch's "area" interpolation; OpenCV's INTER_AREA gives
        the same averages for shrinking and is ~20x faster on a CPU for many small crops.
        """
        h, w = rgb.shape[:2]
        crops = np.zeros((len(boxes), side, side, 3), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes[:, :4].astype(np.int64)):
            x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, w), min(y1, h)
            if x1 > x0 - 1 and y1 > y0 - 1:  # MTCNN's 1-based box convention
                patch = rgb[y0 - 1 : y1, x0 - 1 : x1]
                crops[i] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
        return self._tensor(crops)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        empty = np.zeros((0, 5), np.float32)
        h, w = rgb.shape[:2]
        min_size = max(12.0, self.min_face * min(h, w))
        # Stage 1: the proposal net slides over an image pyramid (faces >= min_size pixels).
        scale = 12.0 / min_size
        min_side = min(h, w) * scale
        proposals = []
        while min_side >= 12:
            size = (int(w * scale + 1), int(h * scale + 1))
            scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(self._tensor(scaled[None]))
            score = prob[0, 1].numpy()
            ys, xs = np.nonzero(score >= self.thresholds[0])
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float32)  # stride 2, 12x12 cells
                q0 = np.floor((2 * cells + 1) / scale)
                q1 = np.floor((2 * cells + 12) / scale)
                found = np.column_stack(
                    [q0, q1, score[ys, xs], reg[0][:, ys, xs].numpy().T]
                ).astype(np.float32)
                proposals.append(found[_nms(found[:, :4], found[:, 4], 0.5)])
            scale *= self.factor
            min_side *= self.factor
        if not proposals:
            return empty
        boxes = np.concatenate(proposals)
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w_ = boxes[:, 2] - boxes[:, 0]
        h_ = boxes[:, 3] - boxes[:, 1]
        boxes = np.column_stack(
            [boxes[:, :4] + boxes[:, 5:9] * np.stack([w_, h_, w_, h_], axis=1), boxes[:, 4]]
        )
        boxes = _square(boxes)
        # Stage 2: the refinement net rescores 24x24 crops.
        reg, prob = self.rnet(self._stage_crops(rgb, boxes, 24))
        keep = prob[:, 1].numpy() > self.thresholds[1]
        boxes = np.column_stack([boxes[keep, :4], prob[keep, 1].numpy()])
        reg = reg[keep].numpy()
        if not len(boxes):
            return empty
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        # Stage 3: the output net rescores 48x48 crops and refines the boxes.
        reg, prob = self.onet(self._stage_crops(rgb, boxes, 48))
        keep = prob[:, 1].numpy() > self.thresholds[2]
        boxes = np.column_stack([boxes[keep, :4], prob[keep, 1].numpy()])
        boxes = _regress(boxes, reg[keep].numpy())
        if not len(boxes):
            return empty
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")]
        return boxes.astype(np.float32)


def make_detector(config: FaceTrackerConfig) -> Detector:
    """The detector named by ``config.detector`` (a callable is returned as it is)."""
    if callable(config.detector):
        return config.detector
    if config.detector == "haar":
        return HaarDetector(min_face=config.min_face)
    if config.detector == "mtcnn":
        return MtcnnDetector(
            config.mtcnn_weights, min_face=config.min_face, thresholds=config.mtcnn_thresholds
        )
    raise EsvaError(f"unknown face detector {config.detector!r} (known: haar, mtcnn)")


# ---------------------------------------------------------------------------------------------
# Tracking


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of box ``a`` (4,) with boxes ``b`` (K, 4)."""
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def main_face(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the main face: the largest, with a gentle preference for the frame centre.

    The score is area × (1 - 0.5 d²), d the centre's distance from the frame centre relative to
    the half-diagonal: a face must be ~2x smaller in area to lose to one at the very centre.
    """
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    d2 = (((centre - [width / 2, height / 2]) / [width / 2, height / 2]) ** 2).sum(1) / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(area * (1 - 0.5 * np.clip(d2, 0, 1))))


def crop_square(rgb: np.ndarray, box: np.ndarray, size: int, grey: bool) -> np.ndarray:
    """Crop ``box`` (x0, y0, x1, y1) from ``rgb``, zero-padded outside the frame, resized."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    patch = rgb[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pad = ((max(-y0, 0), max(y1 - h, 0)), (max(-x0, 0), max(x1 - w, 0)), (0, 0))
    if any(p for pair in pad for p in pair) or patch.size == 0:
        patch = np.pad(patch, pad) if patch.size else np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    shrinking = patch.shape[0] > size
    patch = cv2.resize(
        patch, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    if grey:
        return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)[:, :, None]
    return patch


def crop_box(face: np.ndarray, margin: float) -> np.ndarray:
    """The square crop box for a face box: squared about its centre, grown by ``margin``."""
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    half = max(face[2] - face[0], face[3] - face[1]) * (0.5 + margin)
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def mouth_box(face: np.ndarray) -> np.ndarray:
    """A square on the mouth: centred on the lower third of the face box, half the face wide."""
    cx = (face[0] + face[2]) / 2
    cy = face[1] + (face[3] - face[1]) * 5 / 6
    half = (face[2] - face[0]) / 4
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


class _Pending(NamedTuple):
    time_s: float
    rgb: np.ndarray
    detected: bool


def iter_faces(
    frames: Iterable[tuple[float, np.ndarray]] | VideoFrames,
    config: FaceTrackerConfig | None = None,
) -> Iterator[FaceFrame]:
    """Stream a :class:`FaceFrame` for every ``(time_s, rgb)`` frame, in order.

    Frames wait in a queue until their box is settled (the next detection, or ``max_gap_s``
    passing without one), so memory holds at most the frames of one ``max_gap_s`` window.
    """
    config = config or FaceTrackerConfig()
    detect = make_detector(config)
    if isinstance(frames, VideoFrames):
        frames = zip(frames.timestamps_s.tolist(), frames.frames, strict=True)
    channels = 1 if config.grey else 3
    blank = np.zeros((config.size, config.size, channels), np.uint8)
    blank_mouth = (
        np.zeros((config.mouth_size, config.mouth_size, channels), np.uint8)
        if config.mouth_size
        else None
    )
    no_box = np.full(4, np.nan, np.float32)

    anchor: tuple[float, np.ndarray] | None = None  # last detection: (time, smoothed face box)
    queue: deque[_Pending] = deque()  # frames whose box is not settled yet

    def emit(item: _Pending, face: np.ndarray | None) -> FaceFrame:
        if face is None:
            return FaceFrame(item.time_s, blank, no_box, False, False, blank_mouth)
        box = crop_box(face, config.margin)
        crop = crop_square(item.rgb, box, config.size, config.grey)
        mouth = None
        if config.mouth_size:
            mouth = crop_square(item.rgb, mouth_box(face), config.mouth_size, config.grey)
        return FaceFrame(item.time_s, crop, box, True, item.detected, mouth)

    def settle(item: _Pending, before: tuple | None, after: tuple | None) -> np.ndarray | None:
        """The face box of a frame between two detections (either may be None)."""
        if before is not None and after is not None and after[0] - before[0] <= config.max_gap_s:
            w = (item.time_s - before[0]) / max(after[0] - before[0], 1e-9)
            return (1 - w) * before[1] + w * after[1]
        near = [
            a for a in (before, after) if a is not None and abs(item.time_s - a[0]) <= config.hold_s
        ]
        return min(near, key=lambda a: abs(item.time_s - a[0]))[1] if near else None

    for index, (time_s, rgb) in enumerate(frames):
        time_s = float(time_s)
        face = None
        if index % config.detect_every == 0:
            face = _detect_one(detect, rgb, config, anchor, time_s)
        if face is None:
            queue.append(_Pending(time_s, rgb, False))
            # Frames that no future detection can reach any more are settled now.
            lost = anchor is None or time_s - anchor[0] > config.max_gap_s
            while lost and queue and queue[0].time_s < time_s - config.hold_s:
                yield emit(item := queue.popleft(), settle(item, anchor, None))
            continue
        if anchor is not None and time_s - anchor[0] <= config.max_gap_s:
            face = config.smooth * face + (1 - config.smooth) * anchor[1]
        new_anchor = (time_s, face.astype(np.float32))
        while queue:
            yield emit(item := queue.popleft(), settle(item, anchor, new_anchor))
        anchor = new_anchor
        yield emit(_Pending(time_s, rgb, True), face)
    while queue:
        yield emit(item := queue.popleft(), settle(item, anchor, None))


def _detect_in(
    detect: Detector, rgb: np.ndarray, region: tuple[int, int, int, int], scale: float
) -> np.ndarray:
    """Run ``detect`` on ``region`` (x0, y0, x1, y1) of ``rgb`` resized by ``scale`` (<= 1);
    return boxes (K, 4) in full-frame pixels."""
    x0, y0, x1, y1 = region
    patch = rgb[y0:y1, x0:x1]
    if scale < 1.0:
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    found = np.asarray(detect(patch), np.float32).reshape(-1, 5)
    return found[:, :4] / scale + np.array([x0, y0, x0, y0], np.float32)


def _continue(track: np.ndarray, boxes: np.ndarray, config: FaceTrackerConfig) -> np.ndarray | None:
    """The detection that continues the track (most overlap, at least ``iou_min``), if any."""
    if not len(boxes):
        return None
    overlap = iou(track, boxes)
    best = int(np.argmax(overlap))
    return boxes[best] if overlap[best] >= config.iou_min else None


def _detect_one(
    detect: Detector,
    rgb: np.ndarray,
    config: FaceTrackerConfig,
    anchor: tuple[float, np.ndarray] | None,
    time_s: float,
) -> np.ndarray | None:
    """The face box (full-frame pixels) that this frame contributes to the track, if any.

    While tracking, the detector first looks only near the last box (``config.roi``): a square
    twice the face's side, scaled so the face is ``ROI_FACE_PX``. That costs 3-4x less than a
    whole-frame search and cannot pick up a second person far away. The whole (downscaled) frame
    is searched when the track is new, lost, or not found near its last place.
    """
    h, w = rgb.shape[:2]
    tracking = anchor is not None and time_s - anchor[0] <= config.max_gap_s
    if tracking and config.roi:
        x0, y0, x1, y1 = anchor[1]
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        region = (
            max(0, int(cx - side)),
            max(0, int(cy - side)),
            min(w, int(cx + side) + 1),
            min(h, int(cy + side) + 1),
        )
        if region[2] - region[0] >= 8 and region[3] - region[1] >= 8:
            near = _detect_in(detect, rgb, region, min(1.0, ROI_FACE_PX / max(side, 1.0)))
            face = _continue(anchor[1], near, config)
            if face is not None:
                return face
    if config.detect_side is not None:
        scale = config.detect_side / max(h, w)
    else:  # the smallest face of interest becomes FACE_PX pixels
        scale = FACE_PX / max(config.min_face * min(h, w), 1.0)
    boxes = _detect_in(detect, rgb, (0, 0, w, h), min(1.0, scale))
    if tracking:
        return _continue(anchor[1], boxes, config)
    return boxes[main_face(boxes, w, h)] if len(boxes) else None


def track_faces(
    frames: Iterable[tuple[float, np.ndarray]] | VideoFrames,
    config: FaceTrackerConfig | None = None,
    source: Path | None = None,
) -> FaceTrack:
    """Track the main face through ``frames`` (e.g. ``iter_frames(path, fps=25)``).

    Returns a :class:`FaceTrack`; a clip without any face gives an all-False mask, and no
    frames at all give an empty track.
    """
    config = config or FaceTrackerConfig()
    if source is None and isinstance(frames, VideoFrames):
        source = frames.source
    items = list(iter_faces(frames, config))
    channels = 1 if config.grey else 3
    mouths = None
    if config.mouth_size:
        shape = (0, config.mouth_size, config.mouth_size, channels)
        mouths = np.stack([f.mouth for f in items]) if items else np.zeros(shape, np.uint8)
    return FaceTrack(
        crops=np.stack([f.crop for f in items])
        if items
        else np.zeros((0, config.size, config.size, channels), np.uint8),
        timestamps_s=np.array([f.time_s for f in items], np.float64),
        mask=np.array([f.found for f in items], bool),
        boxes=np.stack([f.box for f in items]) if items else np.zeros((0, 4), np.float32),
        source=source,
        mouths=mouths,
        detected=np.array([f.detected for f in items], bool),
    )
