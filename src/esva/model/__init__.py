"""The ESVA model (MSFE + alignment + fusion), its config, and the batches it eats.

``config``      :class:`ESVAConfig`: every architectural and loss choice (the ablations are flags)
``esva_model``  :class:`ESVAModel`: forward pass, the total loss of Eq. 7, save/load folders
``inputs``      :class:`FeatureDataset` over a feature store and the padding ``collate``
``pooled_voice`` :class:`PooledVoiceModel`: all hidden states' statistics -> linear (the shipped
                voice); ``load_model(folder)`` loads either kind by config.json's model_type
"""

from esva.model.config import ESVAConfig
from esva.model.esva_model import CONFIG_NAME, WEIGHTS_NAME, ESVAModel, ESVAOutput

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "ESVAConfig", "ESVAModel", "ESVAOutput"]
