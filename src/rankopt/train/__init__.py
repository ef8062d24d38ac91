"""Training engine (Lightning): the module wiring model, loss and metrics, and ``fit`` into a run folder."""

from rankopt.train.checkpoint import AtomicCheckpointIO, atomic_torch_save
from rankopt.train.engine import RetrievalData, fit
from rankopt.train.config import OptimConfig
from rankopt.train.module import RetrievalModule

__all__ = ["RetrievalModule", "OptimConfig", "RetrievalData", "fit", "AtomicCheckpointIO", "atomic_torch_save"]
