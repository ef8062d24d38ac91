"""Training engine (Lightning): the module wiring model, loss and metrics, and ``fit`` into a run folder.

The names below are imported on first use, so that reading a config (``rankopt.train.config``) or
building the command line does not import Lightning.
"""

from importlib import import_module

__all__ = ["RetrievalModule", "OptimConfig", "RetrievalData", "fit", "AtomicCheckpointIO", "atomic_torch_save"]

_WHERE = {
    "RetrievalModule": "module",
    "OptimConfig": "config",
    "RetrievalData": "engine",
    "fit": "engine",
    "AtomicCheckpointIO": "checkpoint",
    "atomic_torch_save": "checkpoint",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"rankopt.train.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rankopt.train' has no attribute {name!r}")
