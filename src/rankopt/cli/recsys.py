"""``rankopt recsys evaluate RUN`` (re-evaluation of a finished recommendation run on its own data) and
``rankopt recsys example DIR`` (a small synthetic interaction dataset to try the commands on);
``rankopt recsys train`` is the task's training command (:mod:`rankopt.cli.run_task`)."""

from __future__ import annotations

import argparse
import json

from rankopt.cli.tables import key_values

__all__ = ["register"]


def register(groups) -> None:
    sub = groups.parser_of(("recsys", "evaluate"), "top-k recommendation with GNNs trained on rank losses (ITEM)")
    ev = sub.add_parser(
        "evaluate",
        help="re-evaluate a finished recsys run on its test split",
        description="The run's selected (or refitted) checkpoint on its own test interactions; refused "
        "if the interaction files changed since the run was trained.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--device", help="evaluate on this device (default: the run's)")
    ev.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    ev.set_defaults(func=evaluate)
    ex = sub.add_parser(
        "example",
        help="write a small synthetic interaction dataset (a CSV) to try the commands on",
        description="Users and items in latent taste groups with popularity skew and timestamps, "
        "written as DIR/interactions.csv (user,item,rating,timestamp): rankopt recsys train "
        "DIR splits it per user in time.",
    )
    ex.add_argument("out_dir", metavar="DIR")
    ex.add_argument("--users", type=int, default=600, help="number of users (default 600)")
    ex.add_argument("--items", type=int, default=400, help="number of items (default 400)")
    ex.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ex.set_defaults(func=example)


def evaluate(args: argparse.Namespace) -> int:
    from rankopt.recsys.run import evaluate_run

    metrics = evaluate_run(args.run_dir, device=args.device)
    print(json.dumps(metrics) if args.json else key_values(metrics))
    return 0


def example(args: argparse.Namespace) -> int:
    from rankopt.recsys.example import write_example

    path, n = write_example(args.out_dir, n_users=args.users, n_items=args.items, seed=args.seed)
    print(f"wrote {n} interactions of {args.users} users with {args.items} items to {path}")
    return 0
