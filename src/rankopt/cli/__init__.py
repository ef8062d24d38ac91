"""The ``rankopt`` command: the parser skeleton, the command modules, and the one error boundary.

Each command is a module of this package with ``register(subparsers)`` (its arguments) and a
``run(args) -> int``; the training commands of every task are built from the task registry
(:mod:`rankopt.cli.run_task`). The boundary: a *user's* error (bad input or config, a missing file
or package, the environment) prints one line on stderr and exits 2 (``-v`` adds the traceback); any
other exception is a bug: its traceback is printed, with a request to report it, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import zipfile

__all__ = ["main", "build_parser", "is_user_error"]

COMMANDS = ("evaluate", "embed", "report", "ood", "recsys")  # modules of this package, after the tasks' commands
GROUPS = {"recsys": "top-k recommendation with GNNs trained on rank losses (ITEM)"}  # help of multi-word commands


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rankopt")
    except PackageNotFoundError:
        return "unknown (not installed)"


class Groups:
    """Nested command words (``rankopt recsys train``): one sub-parser per group, made on first use."""

    def __init__(self, sub) -> None:
        self.sub, self.groups = sub, {}

    def parser_of(self, words: tuple[str, ...], help: str) -> argparse._SubParsersAction:
        """The sub-parsers under ``words[:-1]`` (the top level for a one-word command)."""
        if len(words) == 1:
            return self.sub
        group = words[0]
        if group not in self.groups:
            parser = self.sub.add_parser(group, help=GROUPS.get(group, help))
            self.groups[group] = parser.add_subparsers(dest=f"{group}_command", metavar="ACTION", required=True)
        return self.groups[group]


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    from rankopt.cli import run_task

    parser = argparse.ArgumentParser(
        prog="rankopt", description="Train and evaluate models directly on ranking metrics."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress to stderr (and tracebacks of errors)"
    )
    parser.add_argument("--version", action="version", version=f"rankopt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = Groups(sub)
    run_task.register(groups)
    for name in COMMANDS:
        import_module(f"rankopt.cli.{name}").register(groups)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (
        ValueError,
        OSError,
        ImportError,
        EOFError,
        zipfile.BadZipFile,
        FloatingPointError,
    )
    try:  # Lightning's word for a trainer setting this machine cannot honour (devices, strategy)
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        errors += (MisconfigurationException,)
    except ImportError:
        pass
    if "torch" in sys.modules:  # memory the device does not have: the environment, not a bug
        import torch

        errors += (torch.cuda.OutOfMemoryError,)
    return errors


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's (input, config, files, packages, environment) rather than a bug."""
    return isinstance(err, _user_errors())


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {text}"


def _thread_wait_policy() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user set a policy, before torch loads: torch's spinning OpenMP
    threads slow small-tensor work up to 100× when another process wants a core, and passive waiting
    costs little on a quiet machine (benchmarks/omp_wait_policy.py). RANKOPT_OMP_WAIT_POLICY=unset
    leaves libgomp's default (the benchmark's reference)."""
    if "OMP_WAIT_POLICY" not in os.environ and os.environ.get("RANKOPT_OMP_WAIT_POLICY") != "unset":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: list[str] | None = None) -> int:
    _thread_wait_policy()
    argv = list(sys.argv[1:] if argv is None else argv)
    from rankopt.cli.ood import default_action

    parser = build_parser()
    args = parser.parse_args(default_action(argv))
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("rankopt: interrupted (checkpoints written so far are intact: --resume continues a run)", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            traceback.print_exc()
            print(
                f"rankopt: internal error ({type(err).__name__}): this is a bug in rankopt {_version()}; please "
                "report it with the traceback above",
                file=sys.stderr,
            )
            return 1
        if args.verbose:
            traceback.print_exc()
        print(f"rankopt: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
