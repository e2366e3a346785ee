"""``esva.llm.backbone``: local model directories, the once-only cached conversion, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import esva.weights
from esva.errors import EsvaError
from esva.llm import backbone
from esva.llm.backbone import (
    DEFAULT_BACKBONE,
    convert_gguf,
    fingerprint,
    fingerprint_mismatch,
    load_backbone,
    tiny_llama,
)


def test_tiny_llama_is_reproducible() -> None:
    a, tok = tiny_llama()
    b, _ = tiny_llama()
    c, _ = tiny_llama(seed=1)
    assert type(a).__name__ == "LlamaForCausalLM"
    assert (
        fingerprint(a) == fingerprint(b)
        and fingerprint_mismatch(fingerprint(a), fingerprint(b)) is None
    )
    assert "embedding weights differ" in fingerprint_mismatch(fingerprint(a), fingerprint(c))
    text = "Ünïcode ok <|im_end|>"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_local_directory_and_dtype(tmp_path: Path) -> None:
    model, tokenizer = tiny_llama()
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    loaded, tok = load_backbone(str(tmp_path / "lm"), dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16 and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    # A bf16 copy of the same weights is the same backbone; the chat template survives.
    assert fingerprint_mismatch(fingerprint(model), fingerprint(loaded)) is None
    assert tok.chat_template == tokenizer.chat_template
    with pytest.raises(EsvaError, match="not a known backbone"):
        load_backbone(str(tmp_path / "missing"))
    with pytest.raises(EsvaError, match="unknown dtype"):
        load_backbone("tiny-random-llama", dtype="int4")


def test_conversion_runs_once_and_redoes_a_damaged_copy(tmp_path: Path, monkeypatch) -> None:
    """The GGUF read is swapped for the tiny model: the caching logic is what is tested."""
    monkeypatch.setenv("ESVA_CACHE", str(tmp_path / "cache"))
    fake_gguf = tmp_path / "model.gguf"
    fake_gguf.write_bytes(b"GGUF")
    calls = []

    def read_gguf(path, dtype):
        calls.append(path)
        return tiny_llama()

    monkeypatch.setattr(esva.weights, "fetch", lambda name, download=True: fake_gguf)
    monkeypatch.setattr(backbone, "_load_gguf", read_gguf)

    first = convert_gguf(DEFAULT_BACKBONE)
    assert first == tmp_path / "cache" / "converted" / f"{DEFAULT_BACKBONE}-hf-v1"
    assert (first / "config.json").exists() and (first / "model.safetensors").exists()
    assert not list(first.parent.glob(".*tmp"))  # nothing half-written left behind
    assert convert_gguf(DEFAULT_BACKBONE) == first and len(calls) == 1  # cached: not redone

    (first / "config.json").write_text("{}")  # damage it
    assert convert_gguf(DEFAULT_BACKBONE) == first and len(calls) == 2  # converted again
    lm, _ = load_backbone(DEFAULT_BACKBONE)
    assert fingerprint_mismatch(fingerprint(tiny_llama()[0]), fingerprint(lm)) is None
