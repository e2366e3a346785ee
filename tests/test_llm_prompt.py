"""``esva.llm.prompt``: placeholders, chat template, one assembly for training and generation."""

from __future__ import annotations

import pytest
import torch

from esva.errors import EsvaError
from esva.llm import EmotionLLM, EmotionLLMConfig, LoraSettings
from esva.llm.backbone import tiny_llama
from esva.llm.prompt import (
    IGNORE_INDEX,
    assemble,
    build_prompt,
    build_prompts,
    chat_wrap,
    placeholder,
)


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama()


@pytest.fixture(scope="module")
def model() -> EmotionLLM:
    torch.manual_seed(0)
    config = EmotionLLMConfig(
        streams={"audio": 12, "visual": 6},
        tokens={"audio": 3},
        backbone="tiny-random-llama",
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    return EmotionLLM.build(config).eval()


def _features(b: int = 2) -> dict:
    torch.manual_seed(1)
    visual_mask = torch.ones(b, 10, dtype=torch.bool)
    visual_mask[-1] = False  # the last sample has no face
    return {
        "audio": (torch.randn(b, 30, 12), torch.ones(b, 30, dtype=torch.bool)),
        "visual": (torch.randn(b, 10, 6), visual_mask),
    }


def test_build_prompt() -> None:
    text = build_prompt("recognition", ["audio", "joint"], "I'm fine <VisualHere>.", ["a", "b"])
    assert text.startswith("<audio><AudioHere></audio> <joint><JointHere></joint> ")
    assert "The person in video says: I'm fine. [emotion]" in text  # look-alike removed
    assert text.endswith("represents: a, b.")
    assert "<VisualHere>" not in text and "  " not in text
    reasoning = build_prompt("reasoning", ["audio"])
    assert "[reason]" in reasoning and "says" not in reasoning
    prompts = build_prompts("recognition", _features(), ["hi", None])
    assert placeholder("visual") in prompts[0] and placeholder("visual") not in prompts[1]


def test_chat_wrap_splits_the_templated_dialogue(tiny) -> None:
    _, tokenizer = tiny
    prompt, target = chat_wrap(tokenizer, "Q?", "sad", system="Be brief.")
    full = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "sad"},
        ],
        tokenize=False,
    )
    assert prompt + target == full.rstrip("\n")
    assert prompt.endswith("<|im_start|>assistant\n") and target == "sad<|im_end|>"
    assert chat_wrap(tokenizer, "Q?", None, system="Be brief.") == (prompt, None)


def test_assembly_positions_and_labels(tiny) -> None:
    lm, tokenizer = tiny
    embed = lm.get_input_embeddings()
    tokens = {
        "audio": (torch.randn(2, 3, 64), torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)),
    }
    prompts = ["<|im_start|>user\nA <AudioHere> B<|im_end|>\n", "x<AudioHere>"]
    asm = assemble(tokenizer, embed, prompts, tokens, targets=["happy", "no"])
    b, length, _ = asm.inputs_embeds.shape
    assert b == 2 and asm.labels is not None
    for i in range(2):
        start, end = asm.feature_spans[i]["audio"]
        valid = tokens["audio"][0][i][tokens["audio"][1][i]]
        assert end - start == len(valid)  # only valid feature tokens are spliced in
        torch.testing.assert_close(asm.inputs_embeds[i, start:end], valid)
        assert (asm.token_ids[i, start:end] == -1).all()
        assert (asm.labels[i, start:end] == IGNORE_INDEX).all()
        real = asm.attention_mask[i].bool()
        pad = int((~real).sum())
        assert not real[:pad].any() and real[pad:].all()  # left padding
        assert asm.position_ids[i, pad:].tolist() == list(range(length - pad))
        n_prompt = asm.prompt_lengths[i]
        assert (asm.labels[i, : pad + n_prompt] == IGNORE_INDEX).all()
        answer_ids = asm.labels[i, pad + n_prompt :]
        assert tokenizer.decode(answer_ids) == ["happy", "no"][i]
        text_pos = asm.token_ids[i] >= 0
        torch.testing.assert_close(
            asm.inputs_embeds[i, text_pos], embed(asm.token_ids[i, text_pos])
        )
    decoded = tokenizer.decode(asm.token_ids[0][asm.token_ids[0] >= 0])
    assert decoded == "<|im_start|>user\nA  B<|im_end|>\nhappy"


def test_placeholder_errors(tiny) -> None:
    lm, tokenizer = tiny
    tokens = {"audio": (torch.randn(1, 1, 64), torch.ones(1, 1, dtype=torch.bool))}
    embed = lm.get_input_embeddings()
    with pytest.raises(EsvaError, match="more than once"):
        assemble(tokenizer, embed, ["<AudioHere> <AudioHere>"], tokens)
    with pytest.raises(EsvaError, match="no 'visual' feature stream"):
        assemble(tokenizer, embed, ["<VisualHere>"], tokens)
    with pytest.raises(EsvaError, match="max_length"):
        assemble(tokenizer, embed, ["a long prompt"], tokens, max_length=4)


def test_training_and_generation_assemble_identically(model: EmotionLLM) -> None:
    feats = _features()
    prompts = model.prompts("recognition", feats, ["I won!", "Leave me alone."])
    targets = ["happy", "The voice is flat. Therefore: neutral"]
    train = model.prepare(feats, prompts, targets)
    gen = model.prepare(feats, prompts)
    assert gen.labels is None
    for i in range(len(prompts)):
        n = gen.prompt_lengths[i]
        assert train.prompt_lengths[i] == n
        t_real = train.attention_mask[i].bool()
        g_real = gen.attention_mask[i].bool()
        # The generation input is exactly the prompt part of the training input.
        torch.testing.assert_close(
            train.inputs_embeds[i][t_real][:n], gen.inputs_embeds[i][g_real], rtol=0, atol=0
        )
        assert train.token_ids[i][t_real][:n].tolist() == gen.token_ids[i][g_real].tolist()
        assert train.position_ids[i][t_real][:n].tolist() == gen.position_ids[i][g_real].tolist()
        t_pad, g_pad = int((~t_real).sum()), int((~g_real).sum())
        t_spans = {s: (a - t_pad, e - t_pad) for s, (a, e) in train.feature_spans[i].items()}
        g_spans = {s: (a - g_pad, e - g_pad) for s, (a, e) in gen.feature_spans[i].items()}
        assert t_spans == g_spans
    assert set(gen.feature_spans[1]) == {"audio"}  # no face: no visual tokens


def test_first_generated_token_is_the_training_prediction(model: EmotionLLM) -> None:
    """End to end: greedy generation continues from exactly what the loss conditions on."""
    feats = _features()
    prompts = model.prompts("reasoning", feats, ["one", "a longer sentence for padding"])
    out = model(feats, prompts, ["ab", "cd"])
    train = model.prepare(feats, prompts, ["ab", "cd"])
    # Logits come sample by sample; each sample's first one predicts its first answer token.
    n0 = int((train.labels[0] != IGNORE_INDEX).sum())
    predicted = out.logits[[0, n0]].argmax(-1)
    gen = model.prepare(feats, prompts)
    with torch.no_grad():
        ids = model.lm.generate(
            inputs_embeds=gen.inputs_embeds,
            attention_mask=gen.attention_mask,
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )
    assert ids[:, -1].tolist() == predicted.tolist()
    # Padding does not change a sample's result: alone, sample 0 gets the same logits.
    alone = model({s: (x[:1], m[:1]) for s, (x, m) in feats.items()}, prompts[:1], ["ab"])
    torch.testing.assert_close(alone.logits, out.logits[: alone.n_tokens], atol=1e-4, rtol=1e-4)
    texts = model.generate(feats, prompts, max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
