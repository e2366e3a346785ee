"""Scorers that reproduce the MER challenges' official metrics (MERTools / AffectGPT).

- :mod:`esva.evaluate.mer_files`: read and validate MERTools-format CSVs, parse their list strings.
- :mod:`esva.evaluate.emer_judge`: the EMER judge (clue / label overlap, local LM or API).
- :mod:`esva.evaluate.classification`: MER2023 discrete metrics (accuracy, weighted/macro F1, UAR,
  valence MSE and the combined score).
- :mod:`esva.evaluate.openset`: MER2024 open-vocabulary accuracy / recall.
- :mod:`esva.evaluate.wheel`: MER2025 emotion-wheel accuracy / recall / F-score.
- :mod:`esva.evaluate.confusion`: confusion-matrix PNG and per-class table.

The modules are imported explicitly (no re-exports here) so that ``import esva.evaluate.mer_files``
does not pull in scikit-learn or matplotlib.
"""
