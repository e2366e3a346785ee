"""esva.media.faces: one face track per clip, from a stub detector, Haar and MTCNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esva.errors import EsvaError
from esva.media import FaceTrackerConfig, iter_frames, track_faces
from esva.media.faces import crop_box, crop_square, iou, main_face, make_detector
from esva.media.types import VideoFrames

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS_AV = SHARED / "ravdess_av" / "Actor_01"
needs_shared = pytest.mark.skipif(
    not RAVDESS_AV.is_dir(), reason=f"shared data not found at {SHARED}"
)

W, H = 320, 240


def scene(squares: list[tuple[float, float, float]], seed: int = 0) -> np.ndarray:
    """A dark noisy frame with bright squares (cx, cy, side): the stub detector's "faces"."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 40, (H, W, 3), dtype=np.uint8)
    for cx, cy, side in squares:
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        frame[max(y0, 0) : y0 + round(side), max(x0, 0) : x0 + round(side)] = 230
    return frame


class SquareDetector:
    """Finds the bright squares drawn by :func:`scene` (connected components)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        self.calls += 1
        mask = (rgb[..., 0] > 128).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [
            (x, y, x + w, y + h, 1.0) for x, y, w, h, area in stats[1:n] if area >= 4 and w > 1
        ]
        return np.asarray(boxes, np.float32).reshape(-1, 5)


def moving_square(n: int = 30, fps: float = 25.0, hide: range = range(0)):
    """A square moving right by 2 px a frame, hidden in the frames of ``hide``."""
    for k in range(n):
        cx = 100 + 2 * k
        yield k / fps, scene([] if k in hide else [(cx, 120, 60)], seed=k)


def test_track_follows_the_face_and_interpolates():
    detector = SquareDetector()
    config = FaceTrackerConfig(detector=detector, size=32, detect_every=3, smooth=1.0, margin=0)
    track = track_faces(moving_square(30), config)
    assert track.crops.shape == (30, 32, 32, 3) and track.crops.dtype == np.uint8
    assert track.mask.all() and track.coverage == 1.0
    assert detector.calls == 10  # every third frame
    assert track.detected.sum() == 10 and track.detected[::3].all()
    for k, box in enumerate(track.boxes):  # interpolated boxes follow the motion too
        truth = np.array([100 + 2 * k - 30, 90, 100 + 2 * k + 30, 150], np.float32)
        assert iou(truth, box[None])[0] > 0.85
    assert np.allclose(track.timestamps_s, np.arange(30) / 25)
    # the crop is the bright square
    assert track.crops[7].mean() > 180


def test_smoothing_damps_jitter():
    rng = np.random.default_rng(1)
    jitter = rng.normal(0, 4, 40)
    frames = [(k / 25, scene([(160 + jitter[k], 120, 60)], seed=k)) for k in range(40)]
    raw = track_faces(
        frames, FaceTrackerConfig(detector=SquareDetector(), detect_every=1, smooth=1)
    )
    smooth = track_faces(frames, FaceTrackerConfig(detector=SquareDetector(), detect_every=1))
    centre = lambda t: (t.boxes[:, 0] + t.boxes[:, 2]) / 2  # noqa: E731
    assert np.std(np.diff(centre(smooth))) < 0.8 * np.std(np.diff(centre(raw)))


def test_main_face_and_no_switching_during_a_short_gap():
    """The larger face is chosen; while it is briefly missed, the smaller one does not take over."""
    frames = []
    for k in range(40):
        big = [] if 10 <= k < 15 else [(100, 120, 80)]
        frames.append((k / 25, scene([*big, (260, 60, 30)], seed=k)))
    track = track_faces(frames, FaceTrackerConfig(detector=SquareDetector(), detect_every=1))
    centres = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert np.allclose(centres, 100, atol=2)  # never the small face at x=260
    assert track.mask.all()  # the 0.2 s gap is bridged
    assert not track.detected[10:15].any() and track.detected[:10].all()


def test_long_gap_clears_the_mask_then_reacquires():
    hide = range(10, 40)  # 1.2 s without a face
    track = track_faces(
        moving_square(60, hide=hide), FaceTrackerConfig(detector=SquareDetector(), detect_every=2)
    )
    assert track.mask[:10].all() and track.mask[45:].all()
    assert not track.mask[14:36].any()
    assert (track.crops[~track.mask] == 0).all()
    assert np.isnan(track.boxes[~track.mask]).all()


def test_grey_crops_and_mouths():
    config = FaceTrackerConfig(detector=SquareDetector(), size=48, grey=True, mouth_size=24)
    track = track_faces(moving_square(6), config)
    assert track.crops.shape == (6, 48, 48, 1)
    assert track.mouths.shape == (6, 24, 24, 1)
    assert track.mouths.mean() > 150  # the mouth box lies inside the bright square


def test_no_face_gives_all_false_mask():
    frames = VideoFrames(
        frames=np.stack([scene([], seed=k) for k in range(8)]),
        timestamps_s=np.arange(8) / 25.0,
        source=Path("noise.mp4"),
    )
    track = track_faces(frames, FaceTrackerConfig(size=64))  # real Haar cascade
    assert track.crops.shape == (8, 64, 64, 3)
    assert not track.mask.any() and track.coverage == 0.0
    assert not track.crops.any() and track.source == Path("noise.mp4")
    empty = track_faces([], FaceTrackerConfig(size=64))
    assert empty.crops.shape == (0, 64, 64, 3) and empty.coverage == 0.0


def test_crop_square_pads_outside_the_frame():
    rgb = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square(rgb, np.array([-50, -50, 50, 50]), 20, grey=False)
    assert crop.shape == (20, 20, 3)
    assert crop[:8, :8].max() == 0 and crop[12:, 12:].min() == 200
    box = crop_box(np.array([10, 20, 30, 60], np.float32), margin=0.25)
    assert box[2] - box[0] == pytest.approx(60) and box[3] - box[1] == pytest.approx(60)
    assert (box[0] + box[2]) / 2 == pytest.approx(20) and (box[1] + box[3]) / 2 == pytest.approx(40)


def test_main_face_prefers_large_then_central():
    boxes = np.array([[0, 0, 50, 50], [135, 95, 185, 145], [10, 10, 30, 30]], np.float32)
    assert main_face(boxes, 320, 240) == 1  # same size, but central
    boxes[0] = [0, 0, 120, 120]
    assert main_face(boxes, 320, 240) == 0  # much larger wins


def test_unknown_detector_and_missing_cascades(monkeypatch):
    with pytest.raises(EsvaError, match="unknown face detector"):
        make_detector(FaceTrackerConfig(detector="dlib"))
    import cv2

    monkeypatch.setattr(cv2, "data", None, raising=False)
    with pytest.raises(EsvaError, match="opencv-python-headless<5"):
        make_detector(FaceTrackerConfig())


def test_mtcnn_missing_weights(tmp_path):
    with pytest.raises(EsvaError, match="MTCNN weights not found"):
        make_detector(FaceTrackerConfig(detector="mtcnn", mtcnn_weights=tmp_path))


@needs_shared
def test_haar_finds_the_ravdess_face():
    path = RAVDESS_AV / "01-01-01-01-01-01-01.mp4"
    track = track_faces(iter_frames(path, fps=25), FaceTrackerConfig(size=64, mouth_size=32))
    assert track.coverage >= 0.9
    assert track.detected.mean() > 0.25  # detection ran on every third frame and mostly hit
    boxes = track.boxes[track.mask]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (np.abs(centre[:, 0] - 320) < 100).all()  # the actor faces the camera, centred
    side = boxes[:, 2] - boxes[:, 0]
    assert ((side > 120) & (side < 320)).all()  # a 360-px-high frame, head and shoulders
    assert np.std(side) < 0.1 * np.mean(side)  # one stable track


@needs_shared
def test_mtcnn_agrees_with_haar_on_ravdess():
    """MTCNN with facenet-pytorch's weights (fetched from PyPI via esva.weights, cached)."""
    path = RAVDESS_AV / "02-01-01-01-01-01-01.mp4"
    frames = [f for k, f in enumerate(iter_frames(path, fps=10)) if k % 6 == 0]
    config = dict(size=64, detect_every=1, smooth=1.0, margin=0.0)
    try:
        mtcnn = track_faces(frames, FaceTrackerConfig(detector="mtcnn", **config))
    except EsvaError as exc:  # offline without a cached copy
        pytest.skip(str(exc))
    haar = track_faces(frames, FaceTrackerConfig(**config))
    assert mtcnn.detected.all() and haar.detected.all()
    for a, b in zip(mtcnn.boxes, haar.boxes, strict=True):
        assert iou(a, b[None])[0] > 0.5
