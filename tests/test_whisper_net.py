"""The plain-torch Whisper encoder and log-mel (esva.encoders.whisper_net) against transformers.

transformers is the reference: the same weights are loaded into its ``WhisperEncoder`` and every
hidden state is compared; the log-mel is compared with ``WhisperFeatureExtractor`` and the mel
filter bank with ``transformers.audio_utils.mel_filter_bank``. On random weights always; on the
real converted whisper-tiny / whisper-base weights where they are cached or can be fetched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.audio_utils import mel_filter_bank as hf_mel_filter_bank
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from esva.encoders.registry import create_encoder
from esva.encoders.whisper import encoder_from_state_dict
from esva.encoders.whisper_net import WhisperDims, WhisperEncoderNet, log_mel_spectrogram
from esva.errors import EsvaError
from esva.media.mel import mel_filter_bank


def _speechlike(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.2 * np.sin(2 * np.pi * 2 * t)))
    return (tone * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _reference(net: WhisperEncoderNet) -> WhisperEncoder:
    d = net.dims
    config = WhisperConfig(num_mel_bins=d.n_mels, d_model=d.d_model, encoder_layers=d.n_layers,
                           encoder_attention_heads=d.n_heads, encoder_ffn_dim=d.ffn_dim,
                           max_source_positions=d.n_positions)  # fmt: skip
    reference = WhisperEncoder(config).eval()
    reference.load_state_dict(net.state_dict(), strict=True)  # same names, every tensor
    return reference


def _hf_real_length(reference: WhisperEncoder, mel: torch.Tensor) -> list[torch.Tensor]:
    """transformers' own sub-modules on a real-length input (its forward insists on 30 s):
    the computation esva ran before the plain-torch port."""
    x = torch.nn.functional.gelu(reference.conv1(mel))
    x = torch.nn.functional.gelu(reference.conv2(x)).permute(0, 2, 1)
    x = x + reference.embed_positions.weight[: x.shape[1]]
    states = [x]
    for layer in reference.layers:
        out = layer(x, None)
        x = out[0] if isinstance(out, tuple) else out
        states.append(x)
    states[-1] = reference.layer_norm(x)
    return states


def _assert_same_states(net: WhisperEncoderNet, samples: np.ndarray, tol: float) -> None:
    reference = _reference(net)
    with torch.inference_mode():
        padded = log_mel_spectrogram(samples, net.dims.n_mels, pad_to_30s=True)
        theirs = reference(padded, output_hidden_states=True).hidden_states
        ours = net.hidden_states(padded)
        assert len(ours) == len(theirs) == net.dims.n_layers + 1
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=f"30 s, state {i}")
        real = log_mel_spectrogram(samples, net.dims.n_mels)
        for i, (a, b) in enumerate(
            zip(net.hidden_states(real), _hf_real_length(reference, real), strict=True)
        ):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=f"real length, state {i}")


# ----------------------------------------------------------------------------- front end


@pytest.mark.parametrize(
    ("n_freqs", "n_mels", "fmin", "fmax"),
    [(201, 80, 0.0, 8000.0), (201, 128, 0.0, 8000.0), (513, 40, 60.0, 7600.0)],
)
def test_mel_filter_bank_is_transformers(n_freqs, n_mels, fmin, fmax):
    ours = mel_filter_bank(n_freqs, n_mels, fmin, fmax, 16_000)
    theirs = hf_mel_filter_bank(
        num_frequency_bins=n_freqs, num_mel_filters=n_mels, min_frequency=fmin,
        max_frequency=fmax, sampling_rate=16_000, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    assert ours.shape == theirs.shape == (n_freqs, n_mels)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [0.3, 2.017, 31.0])
def test_log_mel_is_whisper_feature_extractor(n_mels, seconds):
    samples = _speechlike(seconds)
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    for pad, padding in ((False, "longest"), (True, "max_length")):
        theirs = extractor(
            samples, sampling_rate=16_000, padding=padding, return_tensors="pt"
        ).input_features
        ours = log_mel_spectrogram(samples, n_mels, pad_to_30s=pad)
        assert ours.shape == theirs.shape, (pad, ours.shape, theirs.shape)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    silence = log_mel_spectrogram(np.zeros(16_000, np.float32), n_mels)  # all floored, finite
    assert torch.isfinite(silence).all()


# ----------------------------------------------------------------------------- encoder


def test_random_weights_every_hidden_state_is_transformers():
    dims = WhisperDims(n_mels=80, d_model=64, n_layers=3, n_heads=4, ffn_dim=96)
    torch.manual_seed(3)
    net = WhisperEncoderNet(dims).eval()  # torch's default init: not only small weights
    with torch.no_grad():  # the position table has no init of its own (zeros): random here too
        net.embed_positions.weight.normal_(0.0, 1.0)
    _assert_same_states(net, _speechlike(2.5), tol=1e-5)


def test_state_dict_must_match_exactly():
    sd = WhisperEncoderNet(WhisperDims(d_model=32, n_layers=1, n_heads=2, ffn_dim=48)).state_dict()
    assert "embed_positions.weight" in sd and "layers.0.self_attn.k_proj.bias" not in sd
    encoder_from_state_dict(dict(sd), n_heads=2)  # loads
    broken = {k: v for k, v in sd.items() if k != "layers.0.fc2.bias"}
    with pytest.raises(RuntimeError, match=r"fc2\.bias"):
        encoder_from_state_dict(broken, n_heads=2)


@pytest.mark.parametrize("name", ["whisper-tiny", "whisper-base"])
def test_pretrained_weights_every_hidden_state_is_transformers(name):
    """The converted CTranslate2 weights in our net and in transformers' WhisperEncoder.

    Both run the same torch kernels in the same order, so the states came out bit-identical
    (torch 2.13 CPU, transformers 5.24; activations up to ~13 for tiny, ~500 for base); 1e-5
    leaves room for another attention backend while a wrong mapping moves outputs by O(1).
    """
    try:
        encoder = create_encoder(name)
    except EsvaError as exc:
        pytest.skip(f"{name} weights unavailable: {exc}")
    _assert_same_states(encoder.encoder, _speechlike(3.3), tol=1e-5)


def test_checkpoint_with_another_log_mel_is_refused(tmp_path):
    """A transformers checkpoint whose preprocessor asks for a log-mel esva does not compute."""
    import json

    from transformers import WhisperModel

    config = WhisperConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=48, decoder_ffn_dim=48, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)  # fmt: skip
    WhisperModel(config).save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)  # the standard one: fine
    encoder = create_encoder("whisper", path=tmp_path)
    assert encoder.encode(_audio(1.0)).features.shape == (50, 32)

    settings = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**settings, "hop_length": 200}))
    with pytest.raises(EsvaError, match="non-standard Whisper log-mel"):
        create_encoder("whisper", path=tmp_path)


def _audio(seconds: float):
    from esva.media.types import AudioClip

    return AudioClip(_speechlike(seconds), 16_000)
