"""The image-retrieval task as a plugin of the run layer: ``rankopt train``."""

from __future__ import annotations

from rankopt.config import Task, TaskCommand
from rankopt.train.config import RunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def test_line(self, result: dict, cfg) -> str:
        t = result.get("protocol", {}).get("test", {})
        return f"{t.get('split', 'test')} ({t.get('mode', '')}, {result['test'].get('n_queries', '?')} queries)"


COMMAND = _Command()

TASK = Task(
    name="images",
    config=RunConfig,
    run="rankopt.train.run:train_run",
    command=("train",),
    help="train an embedding model on a rank loss (default: ROADMAP on Fashion-MNIST, CPU, ~3 min)",
    description="Train with a recipe (a packaged name or a YAML file), overriding any value with --set. The run folder "
    "gets config.yaml, checkpoints/ (best, last; written atomically), splits/ (every item trained and "
    "evaluated on), logs/, metrics.json and test_per_query.csv.",
    default_recipe="fashion-mnist",
    flags={"data-dir": "data.root", "skip-bad-images": "data.skip_bad_images"},
    cli="rankopt.train.task:COMMAND",
    backbone="model.backbone.",
)
