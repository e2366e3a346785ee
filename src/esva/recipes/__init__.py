"""Training and evaluation runs, kept apart from the model builders (torchtune-style).

``engine``          the one accelerate loop: resume, checkpoints, schedule, metrics, progress
``train_esva``      the ESVA recipe (Eq. 7) on a feature store
``train_llm``       projectors + LoRA instruction tuning of the language model
``config``          the ESVA run config (model / data / train sections of one YAML file)
``sampler``         the epoch sampler (batch order from (seed, epoch) only: exact resume)
``progress``        the per-epoch progress bar
``evaluate_model``  a trained model over a store's split: scores, predictions, confusion
``captions``        MERR-style cue captions measured from a store (``esva captions``; the
                    measurements are ``esva.llm.measure``'s, as ``esva explain``'s)
``demo``            ``esva demo``: the synthetic corpus, ESVA and its ablations trained and
                    scored (a training run, so a recipe: apps never import recipes)
"""
