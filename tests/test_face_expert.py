"""``face-expert``: the shipped FER+ face-expression CNN, its hash check, encoder and pooling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from esva.encoders import create_encoder
from esva.encoders.face_expert import (
    ASSET_DIR,
    CLASSES,
    EMBED_DIM,
    WEIGHTS_SHA256,
    FaceExpertEncoder,
    load_asset,
    pool_clip,
    preprocess_faces,
)
from esva.errors import EsvaError
from esva.hashing import file_sha256
from esva.media.types import FaceTrack

# 200 FER+ test images: the shipped net scores 0.815 on them (0.801 on the whole test set).
ACC_BOUND = 0.7


@pytest.fixture(scope="module")
def encoder() -> FaceExpertEncoder:
    return create_encoder("face-expert")


def _track(n: int = 12, size: int = 64, channels: int = 1, seed: int = 0) -> FaceTrack:
    """Smooth random grey 'faces' (upsampled 8x8 noise), the third frame without a face."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 8, 8)).astype(np.float32)
    crops = np.stack([cv2.resize(s, (size, size)) for s in small]).astype(np.uint8)
    crops = np.repeat(crops[..., None], channels, axis=-1)
    mask = np.ones(n, bool)
    mask[2] = False
    crops[2] = 0
    return FaceTrack(crops=crops, timestamps_s=np.arange(n) / 25.0, mask=mask)


def test_shipped_files_match_their_recorded_sha256():
    for name, sha in WEIGHTS_SHA256.items():
        assert len(sha) == 64
        assert file_sha256(ASSET_DIR / name) == sha, name
    assert (ASSET_DIR / "model.safetensors").stat().st_size < 5_000_000
    assert (ASSET_DIR / "MODEL_CARD.md").is_file()


def test_corrupted_weights_fail_with_one_line_naming_the_file(tmp_path: Path):
    copy = tmp_path / "face_expert"
    shutil.copytree(ASSET_DIR, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(EsvaError) as info:
        load_asset(copy)
    message = str(info.value)
    assert "\n" not in message and str(weights) in message and "sha256" in message
    _, config, sha = load_asset(ASSET_DIR)  # the intact copy loads
    assert sha == WEIGHTS_SHA256["model.safetensors"] and config["classes"] == list(CLASSES)
    assert 0.3 < config["temperature"] < 5


def test_encoder_shapes_mask_and_probabilities(encoder: FaceExpertEncoder):
    track = _track()
    out = encoder.encode(track)
    assert out.features.shape == (12, EMBED_DIM + len(CLASSES)) == (12, encoder.dim)
    assert out.mask.tolist() == track.mask.tolist()
    assert not out.features[2].any() and out.features[0].any()
    assert out.fps == pytest.approx(25.0)
    assert out.record.name == "face-expert"
    assert out.record.weights_sha256 == WEIGHTS_SHA256["model.safetensors"]
    probs = encoder.probabilities(out.features)
    assert probs.shape == (12, 8) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # RGB crops of the same grey faces give the same features (grey conversion is exact here).
    rgb = encoder.encode(_track(channels=3))
    np.testing.assert_allclose(rgb.features, out.features, atol=1e-4)
    clip = encoder.clip_expression(track)
    assert clip.probabilities.shape == (8,) and clip.weights[2] == 0.0
    assert clip.probabilities.sum() == pytest.approx(1.0)
    assert clip.peak_time_s == pytest.approx(track.timestamps_s[clip.peak_index])


def test_encoder_rejects_bad_crops_and_options(encoder: FaceExpertEncoder):
    bad = FaceTrack(
        crops=np.zeros((3, 64, 64, 2), np.uint8), timestamps_s=np.zeros(3), mask=np.ones(3, bool)
    )
    with pytest.raises(EsvaError, match="face crops"):
        encoder.encode(bad)
    with pytest.raises(EsvaError, match="crop"):
        create_encoder("face-expert", crop=0.1)
    assert preprocess_faces(np.zeros((2, 64, 64, 1), np.uint8), crop=0.8).shape == (2, 1, 48, 48)


def test_pooling_puts_weight_on_the_expressive_frame():
    n, happy = 25, 17
    probs = np.full((n, 8), 0.05)
    probs[:, 0], probs[:, 1] = 0.4, 0.3  # unsure frames, leaning neutral
    probs[happy] = 0.01
    probs[happy, CLASSES.index("happiness")] = 0.93  # one confidently happy frame
    times = 1.0 + np.arange(n) / 25.0
    mean = pool_clip(probs, times, power=0.0)
    assert mean.label == "neutral"
    np.testing.assert_allclose(mean.weights, 1.0 / n)
    pooled = pool_clip(probs, times)
    assert pooled.label == "happiness"
    assert pooled.weights[happy] == pooled.weights.max() > 4 * pooled.weights[0]
    assert pooled.peak_index == happy and pooled.peak_time_s == pytest.approx(times[happy])
    assert pooled.probabilities.sum() == pytest.approx(1.0)
    # A frame without a face gets no weight, even a confident one.
    masked = np.ones(n, bool)
    masked[happy] = False
    off = pool_clip(probs, times, mask=masked)
    assert off.weights[happy] == 0.0 and off.label == "neutral"
    # No face at all: uniform distribution, no peak, no NaN.
    none = pool_clip(probs, times, mask=np.zeros(n, bool))
    assert none.peak_index == -1 and np.all(np.isfinite(none.probabilities))


def test_ferplus_test_images_are_classified_well_above_chance(shared_data: Path, encoder):
    import csv

    import cv2

    folder = shared_data / "face_images" / "ferplus" / "FER2013Test"
    faces, labels = [], []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            votes = np.array([int(v) for v in row[2:12]])
            if votes.argmax() >= 8:  # unknown / not-a-face majority: dropped by the protocol
                continue
            faces.append(cv2.imread(str(folder / row[0]), cv2.IMREAD_GRAYSCALE))
            labels.append(int(votes[:8].argmax()))
            if len(faces) == 200:
                break
    x = preprocess_faces(np.stack(faces)[..., None], crop=1.0)
    _, logits = encoder.forward_faces(x)
    acc = float((logits.argmax(1) == np.array(labels)).mean())
    assert acc > ACC_BOUND, acc  # 8 classes: chance 0.125, always-neutral ~0.35


def test_real_clip_through_the_face_tracker(shared_data: Path, encoder: FaceExpertEncoder):
    """End to end with esva's own tracker at the encoder's crop size: a MEAD happy clip."""
    from esva.media.decode import iter_frames
    from esva.media.faces import FaceTrackerConfig, track_faces

    path = shared_data / "mead_faces" / "W009_front_happy_level3_001.mp4"
    config = FaceTrackerConfig(detector="haar", size=encoder.face_size, grey=encoder.face_grey)
    track = track_faces(iter_frames(path, fps=25), config, source=path)
    assert track.coverage > 0.9
    clip = encoder.clip_expression(track)
    assert clip.label == "happiness", dict(zip(CLASSES, clip.probabilities.round(2), strict=True))
    assert track.timestamps_s[0] <= clip.peak_time_s <= track.timestamps_s[-1]
