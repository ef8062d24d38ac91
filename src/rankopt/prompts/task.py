"""Prompt learning on a frozen vision-language model (GalLoP) as a plugin of the run layer: ``rankopt prompt``."""

from __future__ import annotations

from rankopt.config import Task, TaskCommand
from rankopt.prompts.config import PromptRunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def test_line(self, result: dict, cfg) -> str:
        z = result.get("zero_shot", {})
        return (
            f"{result['test'].get('n_images', '?')} test images, {result.get('shots')} shots per class; the same "
            f"towers zero-shot: top1 {z.get('top1', float('nan')):.4f}"
        )


COMMAND = _Command()

TASK = Task(
    name="prompts",
    config=PromptRunConfig,
    run="rankopt.prompts.run:prompt_run",
    command=("prompt",),
    help="few-shot prompt learning on a frozen vision-language model: GalLoP, CoOp, zero-shot, linear probe "
    "(default: GalLoP, 16-shot Fashion-MNIST, CPU)",
    description="Learn global and local prompts (GalLoP: top-k sparse multi-scale local aggregation, prompt dropout, "
    "an identity-initialised local projection) on the offline towers (EfficientNet-Lite0 + MiniLM, aligned on "
    "ImageNet's class names), from k shots per class; test top-1 beside the same towers' zero-shot top-1. "
    "rankopt ood RUN --detectors mcm,gl_mcm scores OOD images with the learned prompts.",
    default_recipe="fashion-mnist-16shot",
    flags={"data-dir": "data.root"},
    cli="rankopt.prompts.task:COMMAND",
)
