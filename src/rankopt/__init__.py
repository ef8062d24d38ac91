"""rankopt: train and evaluate models directly on ranking metrics."""

import logging

from rankopt.metrics import evaluate, evaluate_per_query
from rankopt.search import knn

__version__ = "0.1.0"
__all__ = ["evaluate", "evaluate_per_query", "knn", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
