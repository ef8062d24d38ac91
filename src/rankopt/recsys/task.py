"""The recommendation task as a plugin of the run layer: ``rankopt recsys train``."""

from __future__ import annotations

import json
from pathlib import Path

from rankopt.config import Task, TaskCommand
from rankopt.recsys.config import RecRunConfig

__all__ = ["TASK"]


class _Command(TaskCommand):
    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--k",
            metavar="K[,K...]",
            help="cut-offs: recall, ndcg, p, hit, mrr, map at each (train.metrics; monitor ndcg@20 or the first)",
        )

    def overrides(self, args) -> tuple[str | None, list[str]]:
        """``rankopt recsys train DATA_DIR``: the defaults on a folder of interactions; ``--k``: cut-offs."""
        recipe, out = args.recipe, []
        if recipe is not None and ("/" in recipe or recipe.startswith(".")) and not Path(recipe).exists():
            raise ValueError(f"{recipe} is not a folder of interaction files (nor a recipe file)")
        if recipe is not None and Path(recipe).is_dir():
            out += [f"data.root={recipe}", f"recipe=recsys-{Path(recipe).resolve().name}"]
            recipe = None
        if args.k:
            from rankopt.recsys.evaluation import metrics_at

            ks = _cutoffs(args.k)
            out += [f"train.metrics={json.dumps(metrics_at(ks))}", f"train.monitor=ndcg@{20 if 20 in ks else ks[0]}"]
        return recipe, out

    def test_line(self, result: dict, cfg) -> str:
        protocol = result.get("protocol", {})
        masked = "train and valid items" if protocol.get("masked_at_test") == "train+valid" else "context items"
        refit = protocol.get("refit")
        extra = f"; refit on train + valid for {refit['epochs']} epochs" if refit else ""
        return (
            f"{result['test'].get('n_users', '?')} users, {masked} masked ({cfg.model.name} + {cfg.loss.name}, "
            f"{cfg.data.protocol}){extra}"
        )


def _cutoffs(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k {text!r}: give cut-offs as integers, e.g. --k 10,20,50") from None
    if not ks or min(ks) < 1:
        raise ValueError(f"--k {text!r}: give positive cut-offs, e.g. --k 10,20,50")
    return ks


COMMAND = _Command()

TASK = Task(
    name="recsys",
    config=RecRunConfig,
    run="rankopt.recsys.run:train_recsys",
    command=("recsys", "train"),
    help="train a recommender on a folder of interactions",
    description="RECIPE: a packaged recipe (<dataset>-<model>-<variant>, e.g. ml-100k-lightgcn-item-ppr) or a YAML "
    "file, with --data-dir; or directly a DATA_DIR: LightGCN train.txt/valid.txt/test.txt, pair files "
    "data1.txt/test1.txt, one RecBole .inter or one CSV (user,item[,rating][,timestamp]); detected. "
    "The short flags set config keys (their defaults are the config's); --set reaches every key. "
    "Model selection on the validation split; test with train and valid items masked.",
    flags={
        "data-dir": "data.root",
        "model": "model.name",
        "loss": "loss.name",
        "negatives": "loss.negatives",
        "protocol": "data.protocol",
        "epochs": "train.epochs",
        "seed": "train.seed",
        "device": "train.device",
        "lr": "optim.lr",
        "dim": "model.dim",
        "patience": "train.patience",
        "time-limit": "train.time_limit",
        "rating-threshold": "data.rating_threshold",
        "refit": "train.refit",
    },
    cli="rankopt.recsys.task:COMMAND",
)
