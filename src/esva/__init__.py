"""esva: recognise and explain human emotion in video (the ESVA framework, Su & Hu 2025).

The package reads like the paper's Figure 1, one way from raw media to answers:

    media -> encoders -> msfe / align -> fusion / llm -> train / evaluate

``esva.msfe``      multi-scale audio feature extraction (Eq. 1) and its contrastive loss (Eq. 2)
``esva.align``     audio-video temporal alignment (Eq. 3-9)
``esva.fusion``    attention pooling, modality fusion, the ESVA model and its config
``esva.data``      feature-sequence datasets and the synthetic demo corpus
``esva.recipes``     the training recipe (accelerate: CPU, one GPU or many)
``esva.evaluate``  scorers conformant with MERTools (MER2023 / MER2024 / MER2025) and reports
"""

__version__ = "0.1.0"
