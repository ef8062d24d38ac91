"""Self-supervised pre-training (Franca: Venkataramanan et al., 2025; valeoai/Franca): DINOv2-style
self-distillation with nested Matryoshka clustering heads, Sinkhorn-Knopp targets, iBOT with
CyclicMask, KoLeo, and RASA's post-hoc removal of position from patch features."""

from rankopt.ssl.heads import DINOHead, NestedHeads
from rankopt.ssl.losses import Centering, dino_cross_entropy, ibot_patch_loss, koleo, sinkhorn_knopp
from rankopt.ssl.masking import batch_masks, block_mask, patch_mask
from rankopt.ssl.rasa import apply_rasa, fit_rasa, position_r2

__all__ = [
    "DINOHead",
    "NestedHeads",
    "Centering",
    "dino_cross_entropy",
    "ibot_patch_loss",
    "koleo",
    "sinkhorn_knopp",
    "batch_masks",
    "block_mask",
    "patch_mask",
    "apply_rasa",
    "fit_rasa",
    "position_r2",
]
