"""A video world model of driving and its action expert (VaViM / VaVAM) as a plugin of the run layer:
``rankopt drive``."""

from __future__ import annotations

from rankopt.config import Task, TaskCommand
from rankopt.world.config import WorldRunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def test_line(self, result: dict, cfg) -> str:
        cv, ex = result.get("constant_velocity", {}), result.get("expert", {})
        return (
            f"closed loop: collision rate {result['test'].get('collision_rate', float('nan')):.2f} "
            f"(constant velocity {cv.get('collision_rate', float('nan')):.2f}, IDM expert "
            f"{ex.get('collision_rate', float('nan')):.2f})"
        )


COMMAND = _Command()

TASK = Task(
    name="world",
    config=WorldRunConfig,
    run="rankopt.world.run:drive_run",
    command=("drive",),
    help="a video world model of driving (VaViM) and its action expert (VaVAM) in highway-env, driven in closed "
    "loop (default: small, CPU)",
    description="Record IDM-expert episodes in highway-env, train a VQ-VAE tokenizer, a GPT over the frame tokens "
    "(VaViM) and a flow-matching action expert joined to it by joint attention (VaVAM); report perplexity against "
    "copying the last frame, minADE@1/@k against constant velocity, and closed-loop collisions and progress against "
    "the IDM expert.",
    default_recipe="drive-highway",
    stages=("tokenizer", "gpt", "vavam"),
    cli="rankopt.world.task:COMMAND",
)
