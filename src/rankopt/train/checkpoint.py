"""Checkpoints written atomically: a killed run never leaves a half-written file behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from rankopt.atomic import atomic_torch_save

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "read_model_weights"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with the write made atomic (temporary file + rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)


def read_model_weights(checkpoint: str | Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The weights under ``prefix`` of a run's Lightning checkpoint (safe load: tensors only), prefix
    stripped; a truncated, empty or foreign file is a ValueError naming it."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {checkpoint} cannot be read: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    return {k[len(prefix) :]: v for k, v in state.get("state_dict", {}).items() if k.startswith(prefix)}
