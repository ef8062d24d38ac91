"""Checkpoints written atomically: a killed run never leaves a half-written file behind."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from rankopt.atomic import atomic_torch_save
from rankopt.io import read_model_weights

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "read_model_weights"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with the write made atomic (temporary file + rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)
