"""Emotion reasoning with a language model: feature tokens into a LLaMA-architecture LM.

- :mod:`~esva.llm.projector`: one linear layer per feature stream into the LM hidden size,
  utterance-level (1 token) or k segment tokens per stream;
- :mod:`~esva.llm.prompt`: Emotion-LLaMA's prompts with feature placeholders, the LM's chat
  template, and the single ``inputs_embeds`` assembly used for training and generation;
- :mod:`~esva.llm.backbone`: the base LM (SmolLM2-135M-Instruct offline by default, any local
  causal LM, a tiny random Llama for tests);
- :mod:`~esva.llm.lora`: peft LoRA, only adapters and projectors train;
- :mod:`~esva.llm.model`: :class:`EmotionLLM` (loss, generate, save/load as one directory);
- :mod:`~esva.llm.parse`: answers -> labels (Emotion-LLaMA's rule and a stricter parser) and
  -> open-vocabulary emotion words;
- :mod:`~esva.llm.trained`: a trained model folder (``esva train-llm``'s ``best/``): save and
  load the model with its data provenance (the recipe writes it, ``esva explain --model`` reads);
- :mod:`~esva.llm.measure`: voice and face cues measured on the prosody and fer-cnn streams (what
  ``esva explain`` reports and the training captions describe);
- :mod:`~esva.llm.cues`: measured cues as text, and the checker that keeps sentences true.
"""

from esva.llm.backbone import (
    DEFAULT_BACKBONE,
    TINY_BACKBONE,
    convert_gguf,
    fingerprint,
    load_backbone,
    tiny_llama,
)
from esva.llm.lora import LoraSettings, apply_lora
from esva.llm.model import EmotionLLM, EmotionLLMConfig, LLMOutput, features_from_batch
from esva.llm.parse import emotion_words, label_last_word, label_strict
from esva.llm.projector import FeatureProjector, ProjectorConfig, segment_pool
from esva.llm.prompt import (
    EMOTION_LLAMA_LABELS,
    IGNORE_INDEX,
    REASONING_TEMPLATE,
    RECOGNITION_TEMPLATE,
    Assembly,
    assemble,
    build_prompt,
    build_prompts,
    chat_wrap,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "EMOTION_LLAMA_LABELS",
    "IGNORE_INDEX",
    "REASONING_TEMPLATE",
    "RECOGNITION_TEMPLATE",
    "TINY_BACKBONE",
    "Assembly",
    "EmotionLLM",
    "EmotionLLMConfig",
    "FeatureProjector",
    "LLMOutput",
    "LoraSettings",
    "ProjectorConfig",
    "apply_lora",
    "assemble",
    "build_prompt",
    "build_prompts",
    "chat_wrap",
    "convert_gguf",
    "emotion_words",
    "features_from_batch",
    "fingerprint",
    "label_last_word",
    "label_strict",
    "load_backbone",
    "segment_pool",
    "tiny_llama",
]
