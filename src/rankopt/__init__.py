"""rankopt: train and evaluate models directly on ranking metrics.

``rankopt.evaluate``, ``rankopt.evaluate_per_query`` and ``rankopt.knn`` are imported on first use, so
that the command line can set the threads' wait policy before torch loads.
"""

import logging
from importlib import import_module

__version__ = "0.1.0"
__all__ = ["evaluate", "evaluate_per_query", "knn", "__version__"]

_WHERE = {"evaluate": "rankopt.metrics", "evaluate_per_query": "rankopt.metrics", "knn": "rankopt.search"}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'rankopt' has no attribute {name!r}")
