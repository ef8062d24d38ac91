"""The training command of every registered task (``rankopt train``, ``rankopt recsys train``, ...):
a recipe or a run to resume, ``--set`` overrides, the task's short flags (derived from its config
fields: type, choices and help are the field's), then the run through :mod:`rankopt.runs`."""

from __future__ import annotations

import argparse
import json
import logging
import typing

from rankopt import config as configs
from rankopt.cli.tables import run_summary

__all__ = ["register"]


def register(groups) -> None:
    for task in configs.tasks():
        words = task.command
        sub = groups.parser_of(words, help=f"{words[0]}: {task.help}")
        recipes = configs.recipe_names(task.name)
        shown = ", ".join(recipes) if len(recipes) <= 20 else f"{len(recipes)} packaged (e.g. {recipes[0]})"
        parser = sub.add_parser(words[-1], help=task.help, description=f"{task.description} Recipes: {shown}.")
        parser.add_argument(
            "recipe",
            nargs="?",
            metavar="RECIPE",
            help=f"a packaged recipe or a YAML file (default: {task.default_recipe or 'the config defaults'})",
        )
        parser.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.epochs=5 (repeatable; wins over the flags)",
        )
        settings = {s.key: s for s in configs.settings_of(task.config)}
        for flag, key in task.flags.items():
            _add_flag(parser, flag, settings[key])
        parser.add_argument("--run-dir", help="where to write the run (default: runs/<recipe>-<time>)")
        parser.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue the run in RUN_DIR from its last checkpoint (--set may add epochs)",
        )
        parser.add_argument(
            "--json", action="store_true", help="last line of stdout: the run's metrics.json as one JSON object"
        )
        task.command_hooks().add_arguments(parser)
        parser.set_defaults(func=run, task=task.name)


def _add_flag(parser: argparse.ArgumentParser, flag: str, setting: configs.Setting) -> None:
    """``--flag`` for one config key: its type, choices and help from the field, default from the config."""
    help_text = f"{setting.key}: {setting.help}"
    dest = f"flag_{setting.key}"
    if setting.annotation is bool:
        parser.add_argument(f"--{flag}", dest=dest, action="store_const", const=True, help=help_text)
        return
    options = typing.get_args(setting.annotation) or (setting.annotation,)
    kind = next((t for t in options if t in (int, float)), str)
    choices = setting.choice_names()
    parser.add_argument(
        f"--{flag}",
        dest=dest,
        type=kind,
        choices=choices,
        metavar=None if choices else flag.upper().replace("-", "_"),
        help=help_text,
    )


def _overrides(args: argparse.Namespace, task) -> tuple[str | None, list[str]]:
    recipe, out = task.command_hooks().overrides(args)
    for key in task.flags.values():
        value = getattr(args, f"flag_{key}")
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    return recipe, out + list(args.set or [])  # --set last: it wins over the short flags


def run(args: argparse.Namespace) -> int:
    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO when imported: quieten them after

    from rankopt.io import check_writable
    from rankopt.runs import is_rank_zero, resume_run, start_run

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # no hardware banners or tips
        logging.getLogger(name).setLevel(logging.WARNING)
    task = configs.get_task(args.task)
    if args.resume:
        if args.run_dir:
            raise ValueError("--resume RUN_DIR continues that folder: --run-dir has no place beside it")
        recipe, overrides = _overrides(args, task)
        if recipe:
            raise ValueError("give either a RECIPE or --resume RUN_DIR, not both")
        result, folder = resume_run(args.resume, overrides, task.name, progress=not args.json)
    else:
        recipe, overrides = _overrides(args, task)
        cfg = configs.load_config(recipe, overrides, task=task.name)
        if args.run_dir:
            check_writable(f"{args.run_dir}/config.yaml", "--run-dir")
        result, folder = start_run(cfg, args.run_dir, progress=not args.json)
    if not is_rank_zero():
        return 0  # a process DDP launched: rank 0 reports
    cfg = folder.config(task.name)
    print(json.dumps(result) if args.json else run_summary(result, cfg, task))
    return 0
