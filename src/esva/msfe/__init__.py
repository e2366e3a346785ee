"""Multi-Scale Feature Extraction (Eq. 1) and the supervised contrastive loss (Eq. 2)."""

from esva.msfe.contrastive import supervised_contrastive_loss
from esva.msfe.msfe import MSFE, MSFEConfig, mix_branches

__all__ = ["MSFE", "MSFEConfig", "mix_branches", "supervised_contrastive_loss"]
