"""``EmotionLLM`` on the tiny random Llama: LoRA-only training, save/load, refusing a mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from esva.errors import EsvaError
from esva.llm import EmotionLLM, EmotionLLMConfig, LoraSettings, features_from_batch
from esva.llm.model import CONFIG_NAME, PROJECTOR_NAME


def _config(**changes) -> EmotionLLMConfig:
    base = dict(
        streams={"audio": 10, "joint": 8},
        tokens={"joint": 2},
        backbone="tiny-random-llama",
        lora=LoraSettings(r=4, alpha=8, dropout=0.05),
    )
    return EmotionLLMConfig(**{**base, **changes})


def _batch() -> dict:
    g = torch.Generator().manual_seed(3)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 11:] = False
    return {
        "audio": torch.randn(2, 16, 10, generator=g),
        "audio_mask": mask,
        "joint": torch.randn(2, 8, 8, generator=g),
        "joint_mask": torch.ones(2, 8, dtype=torch.bool),
        "label": torch.tensor([2, 3]),
    }


TARGETS = ["happy", "He sounds low. Therefore, it is inferred that his emotional state is: sad"]


@pytest.fixture()
def model() -> EmotionLLM:
    torch.manual_seed(0)
    return EmotionLLM.build(_config())


def _step(model: EmotionLLM, optimizer) -> float:
    feats = features_from_batch(_batch(), list(model.config.streams))
    prompts = model.prompts("reasoning", feats, ["hello", "fine"])
    out = model(feats, prompts, TARGETS)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(out.loss.detach())


def test_only_lora_and_projector_train(model: EmotionLLM) -> None:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("projector.") for n in names)
    assert any(n.startswith("projector.") for n in names)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert any("embed_tokens" in n for n in frozen)
    assert any("q_proj.base_layer" in n for n in frozen)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    model.train()
    feats = features_from_batch(_batch(), ["audio", "joint"])
    out = model(feats, model.prompts("recognition", feats), TARGETS)
    assert out.n_tokens == out.logits.shape[0] > 0 and torch.isfinite(out.loss)
    out.loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == names  # every trainable parameter, and nothing else, got a gradient
    # An optimizer over ALL parameters still cannot move the frozen ones (they have no grad).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    optimizer.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    moved = [n for n, p in model.named_parameters() if n in trained and not p.equal(trained[n])]
    assert any("lora_B" in n for n in moved) and any(n.startswith("projector.") for n in moved)


def test_loss_falls_when_overfitting_one_batch(model: EmotionLLM) -> None:
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=3e-2)
    losses = [_step(model, optimizer) for _ in range(10)]
    assert losses[-1] < losses[0] - 0.5, losses  # nats per answer token


def test_save_load_round_trip(model: EmotionLLM, tmp_path: Path) -> None:
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=5e-3)
    for _ in range(2):
        _step(model, optimizer)  # LoRA B is zero at start: train so the adapters matter
    model.eval()
    feats = features_from_batch(_batch(), ["audio", "joint"])
    prompts = model.prompts("recognition", feats, ["hi", None])
    with torch.no_grad():
        before = model(feats, prompts, TARGETS).logits
    out = model.save_pretrained(tmp_path / "llm")
    files = {p.name for p in out.iterdir()}
    assert {CONFIG_NAME, PROJECTOR_NAME, "adapter_config.json", "adapter_model.safetensors"} <= (
        files
    )

    loaded = EmotionLLM.from_pretrained(out).eval()
    with torch.no_grad():
        after = loaded(feats, prompts, TARGETS).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert loaded.config == model.config
    assert not any(p.requires_grad for p in loaded.parameters())  # inference by default
    # The fresh base model alone gives other logits: the adapters and projector were loaded.
    fresh = EmotionLLM.build(model.config).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(feats, prompts, TARGETS).logits, before, atol=1e-3)

    half = EmotionLLM.from_pretrained(out, dtype="bfloat16").eval()  # same LM, other dtype
    assert half.lm.get_input_embeddings().weight.dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(half(feats, prompts, TARGETS).logits, before, atol=0.2, rtol=0.1)

    trainable = EmotionLLM.from_pretrained(out, trainable=True)
    names = {n for n, p in trainable.named_parameters() if p.requires_grad}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}


def _edit_meta(directory: Path, edit) -> None:
    path = directory / CONFIG_NAME
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_refuses_a_mismatch(model: EmotionLLM, tmp_path: Path) -> None:
    out = model.save_pretrained(tmp_path / "llm")

    def other_weights(meta):
        meta["backbone"]["embedding_probe"] = [v + 0.5 for v in meta["backbone"]["embedding_probe"]]

    _edit_meta(out, other_weights)
    with pytest.raises(EsvaError, match="embedding weights differ") as err:
        EmotionLLM.from_pretrained(out)
    assert "\n" not in str(err.value) and str(out) in str(err.value)

    out = model.save_pretrained(tmp_path / "llm")  # atomic_dir replaces the whole directory
    _edit_meta(out, lambda meta: meta["backbone"].update(hidden_size=4096))
    with pytest.raises(EsvaError, match="hidden_size is 64, the adapter was trained with 4096"):
        EmotionLLM.from_pretrained(out)

    out = model.save_pretrained(tmp_path / "llm")
    _edit_meta(out, lambda meta: meta["config"]["streams"].update(audio=11))
    with pytest.raises(EsvaError, match="projector weights do not fit"):
        EmotionLLM.from_pretrained(out)

    with pytest.raises(EsvaError, match="file not found"):
        EmotionLLM.from_pretrained(tmp_path / "nothing")
    with pytest.raises(EsvaError, match="not a known backbone"):
        EmotionLLM.from_pretrained(model.save_pretrained(tmp_path / "x"), backbone="/no/such/lm")


def test_config_errors() -> None:
    with pytest.raises(EsvaError, match="unknown LLM config keys"):
        EmotionLLMConfig.from_dict({"streams": {"audio": 4}, "rank": 3})
    with pytest.raises(EsvaError, match="unknown dtype"):
        _config(dtype="float8")
    with pytest.raises(EsvaError, match="invalid LoRA settings"):
        LoraSettings(r=0)
    with pytest.raises(EsvaError, match="cannot add LoRA"):
        EmotionLLM.build(_config(lora=LoraSettings(target_modules=["c_attn"])))
