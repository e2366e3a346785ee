"""Audio-video temporal alignment, the paper's Eq. 3-9.

``resample``  Eq. 3   both streams onto one frame rate and one clock
``offsets``   Eq. 4-6 local distances D^i(τ), global cross-correlation C(τ), their minimisers
              Eq. 8-9 L_align = α·D_local − β·C_global and the τ* that minimises it
``heads``     learned linear heads that put audio and visual frames into one comparable space
"""

from esva.align.heads import SyncHeads
from esva.align.offsets import (
    AlignmentCurves,
    BatchOffsets,
    OffsetEstimate,
    ShiftedProducts,
    alignment_cost,
    alignment_curves,
    alignment_loss,
    estimate_offset,
    estimate_offsets,
    global_xcorr,
    local_distance,
    local_offsets,
    offsets_from_curves,
    parabolic_peak,
    shift,
    shifted_products,
    soft_min_alignment,
    standardize,
)
from esva.align.resample import resample_sequence

__all__ = [
    "AlignmentCurves",
    "BatchOffsets",
    "OffsetEstimate",
    "ShiftedProducts",
    "SyncHeads",
    "alignment_cost",
    "alignment_curves",
    "alignment_loss",
    "estimate_offset",
    "estimate_offsets",
    "global_xcorr",
    "local_distance",
    "local_offsets",
    "offsets_from_curves",
    "parabolic_peak",
    "resample_sequence",
    "shift",
    "shifted_products",
    "soft_min_alignment",
    "standardize",
]
