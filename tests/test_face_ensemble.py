"""``face-ensemble``: the face expert and fer-cnn pooled, with the training priors removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from esva.encoders import create_encoder, encoder_names, list_encoders
from esva.encoders import face_ensemble as fens
from esva.encoders import fer_cnn as fc
from esva.encoders.face_expert import CLASSES
from esva.errors import EsvaError
from esva.media.types import FaceTrack


@pytest.fixture(scope="module")
def encoder() -> fens.FaceEnsembleEncoder:
    return create_encoder("face-ensemble")


def _softmax(x: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(x, np.float32)), -1).numpy()


def test_registered_under_its_name_and_maps_to_ser7():
    from esva.fusion.label_spaces import target_table

    assert "face-ensemble" in encoder_names()
    assert "face-ensemble" in list_encoders()
    assert fens.CLASSES == CLASSES
    table = target_table(fens.CLASSES)  # the fused default can use it like face-expert
    assert table["contempt"] is None and table["disgust"] == "disgust"


def test_fer_cnn_columns_map_to_the_same_emotion():
    for i, name in enumerate(fc.LABELS):
        target = CLASSES[fens.FER_CNN_INDEX[i]]
        assert target.startswith(name[:3]) or (name, target) in {
            ("angry", "anger"),
            ("happy", "happiness"),
            ("sad", "sadness"),
        }
    assert sorted(fens.FER_CNN_INDEX) == [i for i in range(8) if i != fens.CONTEMPT]
    assert len(fens.EXPERT_PRIOR) == len(CLASSES)
    assert sum(fens.EXPERT_PRIOR) == pytest.approx(1.0, abs=1e-4)


def test_pooled_probabilities_are_a_distribution():
    rng = np.random.default_rng(0)
    e, f = rng.normal(0, 3, (50, 8)), rng.normal(0, 3, (50, 7))
    for w in (0.0, 0.3, fens.EXPERT_WEIGHT, 1.0):
        for tau in (0.0, fens.PRIOR_POWER, 1.0):
            p = _softmax(fens.pool_logits(e, f, w, tau))
            assert p.shape == (50, 8) and np.all(np.isfinite(p)) and np.all(p >= 0)
            np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # w = 1, no prior correction, no output temperature: exactly the expert's own distribution.
    same = fens.pool_logits(e, f, 1.0, 0.0, output_temperature=1.0)
    np.testing.assert_allclose(_softmax(same), _softmax(e), atol=1e-5)
    # The output temperature sharpens (T < 1) without changing the ranking.
    shipped = fens.pool_logits(e, f)
    assert fens.OUTPUT_TEMPERATURE < 1.0
    assert (shipped.argmax(1) == fens.pool_logits(e, f, output_temperature=1.0).argmax(1)).all()


def test_class_mapping_and_contempt_in_the_pool():
    e = np.zeros((1, 8))
    e[0, CLASSES.index("contempt")] = 2.0  # the expert leans to contempt
    f = np.full((1, 7), -4.0)
    f[0, fc.LABELS.index("angry")] = 6.0  # fer-cnn is sure of anger
    p = _softmax(fens.pool_logits(e, f, 0.0, 0.0))[0]
    assert CLASSES[int(p.argmax())] == "anger"
    # contempt is the expert's alone: fer-cnn's certainty does not change its log-odds vs the
    # expert's own scale, and with w = 1 fer-cnn has no say at all.
    p1 = _softmax(fens.pool_logits(e, f, 1.0, 0.0))[0]
    assert CLASSES[int(p1.argmax())] == "contempt"


def test_prior_correction_raises_the_rare_classes():
    rng = np.random.default_rng(1)
    e, f = rng.normal(0, 1, (200, 8)), rng.normal(0, 1, (200, 7))
    rare = [CLASSES.index(c) for c in ("disgust", "fear", "contempt")]
    p0 = _softmax(fens.pool_logits(e, f, 0.6, 0.0))[:, rare].mean()
    p1 = _softmax(fens.pool_logits(e, f, 0.6, 0.9))[:, rare].mean()
    assert p1 > p0


def test_encoder_shapes_mask_and_probabilities(encoder: fens.FaceEnsembleEncoder):
    import cv2

    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (6, 8, 8)).astype(np.float32)
    crops = np.stack([cv2.resize(s, (64, 64)) for s in small]).astype(np.uint8)[..., None]
    mask = np.ones(6, bool)
    mask[2] = False
    track = FaceTrack(crops=crops, timestamps_s=np.arange(6) / 25.0, mask=mask)
    out = encoder.encode(track)
    assert out.features.shape == (6, 392) == (6, encoder.dim)
    assert not out.features[2].any() and out.features[0].any()
    assert out.record.name == "face-ensemble" and len(out.record.weights_sha256) == 64
    probs = encoder.probabilities(out.features)
    assert probs.shape == (6, 8)
    np.testing.assert_allclose(probs[mask].sum(1), 1.0, atol=1e-5)
    # The same as pooling the two encoders' own outputs by hand.
    e = encoder.expert.encode(track).features[:, -8:]
    f = encoder.fer.encode(track).features[:, -7:]
    manual = fens.pool_logits(e[mask], f[mask])
    np.testing.assert_allclose(out.features[mask, -8:], manual, atol=1e-4)
    clip = encoder.clip_expression(track)
    assert clip.probabilities.sum() == pytest.approx(1.0) and clip.weights[2] == 0.0


def test_options_are_checked():
    with pytest.raises(EsvaError, match="expert_weight"):
        create_encoder("face-ensemble", pretrained=False, expert_weight=1.5)
    with pytest.raises(EsvaError, match="prior_power"):
        create_encoder("face-ensemble", pretrained=False, prior_power=-0.1)


def test_real_clip_through_the_face_tracker(shared_data: Path, encoder):
    """End to end with esva's tracker at the encoder's crop size: a MEAD happy clip."""
    from esva.media.decode import iter_frames
    from esva.media.faces import FaceTrackerConfig, track_faces

    path = shared_data / "mead_faces" / "W009_front_happy_level3_001.mp4"
    config = FaceTrackerConfig(detector="haar", size=encoder.face_size, grey=encoder.face_grey)
    track = track_faces(iter_frames(path, fps=25), config, source=path)
    clip = encoder.clip_expression(track)
    assert clip.label == "happiness", dict(zip(CLASSES, clip.probabilities.round(2), strict=True))
