"""``rankopt report``: one self-contained HTML page per run or embeddings file, and comparisons of
runs on the same queries with paired confidence intervals and tests (needs the ``report`` extra:
matplotlib and Jinja2)."""

from rankopt.report.build import compare, report
from rankopt.report.stats import bootstrap_ci, paired_bootstrap_ci, randomization_test

__all__ = ["report", "compare", "bootstrap_ci", "paired_bootstrap_ci", "randomization_test"]
