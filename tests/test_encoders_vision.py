"""MAE / VideoMAE / CLIP / EVA face-track encoders, on tiny random checkpoints (no download)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    HubertConfig,
    HubertModel,
    VideoMAEConfig,
    VideoMAEModel,
    ViTMAEConfig,
    ViTMAEModel,
)

from esva.encoders import create_encoder
from esva.errors import EsvaError
from esva.media.types import FaceTrack

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
)
FPS = 25.0
# A preprocessor config unlike every family default, so the tests see that it is read.
PREPROCESSOR = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3], "do_normalize": True}


def _configs() -> dict:
    return {
        "mae": ViTMAEConfig(**TINY),
        "clip": CLIPVisionConfig(**TINY),
        "eva": CLIPVisionConfig(**TINY),  # eva takes any transformers vision checkpoint
        "videomae": VideoMAEConfig(**TINY, num_frames=4, tubelet_size=2),
    }


def _track(n: int = 30, size: int = 48, seed: int = 0, t0: float = 2.0) -> FaceTrack:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    mask = np.ones(n, bool)
    mask[5:9] = False
    crops[~mask] = 0
    return FaceTrack(crops=crops, timestamps_s=t0 + np.arange(n) / FPS, mask=mask)


def _pixels(crops: np.ndarray, mean, std, size: int = 32) -> torch.Tensor:
    """The preprocessing written out independently: OpenCV resize, rescale, normalise, CHW."""
    out = []
    for crop in crops:
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
        if crop.shape[0] != size:
            crop = cv2.resize(crop, (size, size), interpolation=interp)
        x = (crop.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
        out.append(x.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("name", ["mae", "clip", "eva"])
def test_per_frame_shapes_timing_and_masked_frames(name):
    track = _track()
    encoder = create_encoder(name, pretrained=False, config=_configs()[name])
    out = encoder.encode(track)
    assert out.features.shape == (30, 32) and out.features.dtype == np.float32
    assert out.fps == pytest.approx(FPS)
    assert out.start_s == pytest.approx(2.0)
    np.testing.assert_array_equal(out.mask, track.mask)
    assert not out.features[~track.mask].any()  # frames without a face: zero
    assert (np.abs(out.features[track.mask]).sum(1) > 0).all()
    assert np.isfinite(out.features).all()
    # Different faces give different vectors (the crops reach the model).
    assert not np.allclose(out.features[0], out.features[1])


def test_mae_sees_all_patches_in_order(tmp_path):
    """MAE's random 75% masking is off: features are deterministic and equal a direct run."""
    torch.manual_seed(0)
    model = ViTMAEModel(ViTMAEConfig(**TINY)).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    track = _track(n=12)
    encoder = create_encoder("mae", path=tmp_path, layer="-2..-1")
    first, second = encoder.encode(track), encoder.encode(track)
    np.testing.assert_array_equal(first.features, second.features)

    valid = track.mask
    pixels = _pixels(track.crops[valid], PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"])
    model.config.mask_ratio = 0.0
    noise = torch.arange(16, dtype=torch.float32).expand(len(pixels), 16)  # 4x4 patches, in order
    with torch.inference_mode():
        hidden = model(pixels, noise=noise, output_hidden_states=True).hidden_states
    expected = ((hidden[-2] + hidden[-1]) / 2)[:, 1:].mean(1).numpy()  # patch-token mean
    np.testing.assert_allclose(first.features[valid], expected, atol=1e-4)
    assert first.record.layer == "-2..-1 mean, token mean"


def test_clip_cls_token_and_preprocessor_config(tmp_path):
    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY)).eval()
    model.save_pretrained(tmp_path)
    track = _track(n=6, size=32)  # already at the model's size: no resize
    valid = track.mask

    default = create_encoder("clip", path=tmp_path).encode(track)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    custom = create_encoder("clip", path=tmp_path).encode(track)
    assert not np.allclose(default.features[valid], custom.features[valid], atol=1e-3)

    pixels = _pixels(track.crops[valid], PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"])
    with torch.inference_mode():
        out = model(pixels, output_hidden_states=True)
    np.testing.assert_allclose(
        custom.features[valid], out.last_hidden_state[:, 0].numpy(), atol=1e-4
    )
    first_layer = create_encoder("clip", path=tmp_path, layer=1, pool="mean").encode(track)
    np.testing.assert_allclose(
        first_layer.features[valid], out.hidden_states[1][:, 1:].mean(1).numpy(), atol=1e-4
    )


def test_clip_and_eva_load_the_tower_of_a_full_clip_checkpoint(tmp_path):
    torch.manual_seed(0)
    config = CLIPConfig(
        vision_config=TINY,
        text_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
        ),
    )
    full = CLIPModel(config).eval()
    full.save_pretrained(tmp_path)
    track = _track(n=4, size=32)
    clip_out = create_encoder("clip", path=tmp_path).encode(track)
    eva_out = create_encoder("eva", path=tmp_path).encode(track)
    assert clip_out.features.shape == eva_out.features.shape == (4, 32)
    # Both read the same trained tower (no random "missing" weights).
    np.testing.assert_allclose(clip_out.features, eva_out.features, atol=1e-5)


def test_videomae_windows_timing_and_masking(tmp_path):
    torch.manual_seed(0)
    model = VideoMAEModel(_configs()["videomae"]).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    n = 30
    track = _track(n=n)
    track.mask[:] = True
    track.mask[12:20] = False  # windows starting at 12, 14, 16 are entirely without a face
    encoder = create_encoder("videomae", path=tmp_path)
    out = encoder.encode(track)

    # 4-frame windows every 2 frames, the last one padded: 1 + ceil((30 - 4) / 2) = 14.
    assert out.features.shape == (14, 32)
    assert out.fps == pytest.approx(FPS / 2)
    assert out.start_s == pytest.approx(2.0 + 1.5 / FPS)  # centre of frames 0..3
    starts = np.arange(14) * 2
    no_face = np.array([not track.mask[s : s + 4].any() for s in starts])
    assert (~out.mask == no_face).all() and no_face.sum() == 3
    assert not out.features[~out.mask].any()

    # Window 0 equals the model run directly on frames 0..3 (all tokens averaged).
    pixels = _pixels(track.crops[:4], PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"])
    with torch.inference_mode():
        direct = model(pixels[None]).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(out.features[0], direct, atol=1e-4)
    # A window with a missing frame borrows the nearest face: frames 10, 11, 11, 11.
    borrowed = _pixels(
        track.crops[[10, 11, 11, 11]], PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"]
    )
    with torch.inference_mode():
        direct = model(borrowed[None]).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(out.features[5], direct, atol=1e-4)


def test_videomae_short_track_and_options():
    config = _configs()["videomae"]
    encoder = create_encoder(
        "videomae", pretrained=False, config=config, window_stride=4, frame_step=2
    )
    out = encoder.encode(_track(n=3))  # shorter than one window: one padded window
    assert out.features.shape == (1, 32)
    long = encoder.encode(_track(n=30))  # span (4 - 1) * 2 + 1 = 7 frames, every 4 frames
    assert long.features.shape == (1 + int(np.ceil((30 - 7) / 4)), 32)
    assert long.fps == pytest.approx(FPS / 4) and long.start_s == pytest.approx(2.0 + 3 / FPS)
    with pytest.raises(EsvaError, match="no class token"):
        create_encoder("videomae", pretrained=False, config=config, pool="cls")


@pytest.mark.parametrize("name", ["mae", "videomae"])
def test_empty_track(name):
    encoder = create_encoder(name, pretrained=False, config=_configs()[name])
    empty = FaceTrack(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0), np.zeros(0, bool))
    out = encoder.encode(empty)
    assert out.features.shape == (0, 32) and out.mask.shape == (0,)


def test_bad_track_and_bad_options_are_user_errors():
    encoder = create_encoder("clip", pretrained=False, config=_configs()["clip"])
    bad = FaceTrack(np.zeros((3, 32, 32, 3), np.float32), np.arange(3.0), np.ones(3, bool))
    with pytest.raises(EsvaError, match="uint8"):
        encoder.encode(bad)
    with pytest.raises(EsvaError, match="unknown option"):
        create_encoder("clip", pretrained=False, config=_configs()["clip"], chunk_s=3)
    with pytest.raises(EsvaError, match="pool"):
        create_encoder("clip", pretrained=False, config=_configs()["clip"], pool="max")


def test_missing_path_wrong_type_and_no_eva_default(tmp_path):
    with pytest.raises(EsvaError) as info:
        create_encoder("videomae", path=tmp_path / "absent")
    assert "\n" not in str(info.value) and str(tmp_path / "absent") in str(info.value)
    HubertModel(
        HubertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            conv_dim=(32,) * 7,
        )
    ).save_pretrained(tmp_path / "h")
    with pytest.raises(EsvaError, match="needs a 'vit_mae' checkpoint"):
        create_encoder("mae", path=tmp_path / "h")
    with pytest.raises(EsvaError, match="--path"):
        create_encoder("eva")


def test_weights_hash_tracks_the_file(tmp_path):
    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(**TINY))
    model.save_pretrained(tmp_path)
    first = create_encoder("clip", path=tmp_path).record
    assert (
        first.weights_sha256
        == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    )
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(tmp_path)
    assert create_encoder("clip", path=tmp_path).record.weights_sha256 != first.weights_sha256
