"""Self-supervised pre-training (Franca) as a plugin of the run layer: ``rankopt pretrain``."""

from __future__ import annotations

from rankopt.config import Task, TaskCommand
from rankopt.ssl.config import SSLRunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def test_line(self, result: dict, cfg) -> str:
        init = result.get("init", {})
        t = result["test"]
        return (
            f"frozen teacher features of {t.get('n_queries', '?')} test images (leave-one-out); the untrained "
            f"backbone: map@r {init.get('map@r', float('nan')):.4f}, knn_acc {init.get('knn_acc', float('nan')):.4f}"
        )


COMMAND = _Command()

TASK = Task(
    name="ssl",
    config=SSLRunConfig,
    run="rankopt.ssl.run:pretrain_run",
    command=("pretrain",),
    help="self-supervised pre-training with Franca's nested Matryoshka heads (default: Fashion-MNIST images, CPU)",
    description="Pre-train a backbone on unlabeled images by self-distillation (student / EMA teacher, multi-crop, "
    "Sinkhorn-Knopp targets, nested heads, KoLeo, iBOT with CyclicMask on patch-token backbones), then judge the "
    "frozen teacher on the test split: exact retrieval, k-NN and linear-probe accuracy, next to the same numbers "
    "for the backbone's initialisation. rankopt train --set model.weights=RUN fine-tunes from it.",
    default_recipe="pretrain",
    flags={"data-dir": "data.root"},
    cli="rankopt.ssl.task:COMMAND",
    backbone="teacher.backbone.",
)
