"""``RunFolder``: the one reader and writer of a run folder, for every task.

A run folder holds::

    config.yaml            the resolved config (with its task)
    checkpoints/last.ckpt  after every epoch; best.ckpt: the best validation epoch (atomic writes)
    splits/manifest.json   the items of every split the run trained and evaluated on, and the data's
    splits/<part>.txt      fingerprint (one line per item: its index in the dataset split, and its path)
    logs/version_N/        one CSV log per start
    metrics.json           written last: its presence marks a finished run. ``test``, ``selection``
                           (split, metric, value, epoch, epochs_run, checkpoint), ``valid``, ``history``
    test_per_query.csv     every test query's (user's) value of each metric
    <task extras>          e.g. ood.json, ood_scores.npz, ood/ (rankopt ood)

Every path inside is relative to the folder, so a folder copied or moved keeps working. While a
process writes a run, it holds the folder's lock (``.lock``; released when the process ends, killed
or not): a second writer is refused. A resume never rewrites a run's config with settings its
weights never saw: only the keys that continue a run (more epochs, other devices) may change.

Readers (``report``, ``ood``, ``embed``, ``recsys evaluate``, ``--resume``, the benchmarks) take the
selected checkpoint, the config and the evaluated items from here, never from a re-derivation.
Folders written before the manifest existed (no ``splits/manifest.json``) still open: their
selected checkpoint comes from metrics.json and their splits are re-derived from the config by the
task, which says so.

>>> import tempfile
>>> folder = RunFolder(tempfile.mkdtemp())
>>> folder.is_run(), folder.finished()
(False, False)
>>> folder.relative(folder.checkpoints / "best.ckpt")
'checkpoints/best.ckpt'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rankopt.atomic import atomic_write_text
from rankopt.config import changed_keys, from_dict, get_task, to_dict

__all__ = [
    "RunFolder",
    "SplitItems",
    "RunLockedError",
    "DataChangedError",
    "PerQueryRows",
    "fingerprint",
    "is_rank_zero",
    "RESUMABLE",
    "start_run",
    "resume_run",
]

MANIFEST_FORMAT = 1
RUN_DIR_ENV = "RANKOPT_RUN_DIR"  # tells the processes DDP launches where rank 0 writes

# what a --resume may change in any task: where and on what hardware it runs, never what it trains
RESUMABLE = (
    "train.epochs",
    "train.patience",
    "train.min_epochs",
    "train.time_limit",
    "train.run_dir",
    "train.accelerator",
    "train.devices",
    "train.strategy",
    "train.device",
    "data.num_workers",
    "data.root",
)


class PerQueryRows:
    """A task's test_per_query.csv from a list of dicts, one per query (the first key: its id column;
    the same keys in every row), written atomically. What ``RunFolder.write_results`` takes."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def write_csv(self, path) -> None:
        keys = list(self.rows[0])
        lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in self.rows]
        atomic_write_text(path, "\n".join(lines) + "\n")


class RunLockedError(OSError):
    """Another process is writing the run folder."""


class DataChangedError(ValueError):
    """The data a run would be read with is not the data it was trained and tested on."""


def is_rank_zero() -> bool:
    """False in the extra processes a DDP launcher started (they compute, rank 0 writes and reports)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


@dataclass
class SplitItems:
    """The items of one part of a run (train, valid, test, test_gallery): the dataset split they come
    from (None: a dataset without splits, read whole), their indices in it, and their identities
    (relative paths, or the indices)."""

    split: str | None
    indices: np.ndarray  # (n,) int64
    items: list[str]


def fingerprint(*arrays: Any) -> str:
    """A short sha256 of arrays and strings, in order: what a run's data is recognised by."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, str):
            h.update(b"s" + a.encode() + b"\0")
        elif isinstance(a, (list, tuple)):
            h.update(b"l" + "\n".join(map(str, a)).encode() + b"\0")
        else:
            arr = np.ascontiguousarray(np.asarray(a))
            h.update(f"a{arr.dtype.str}{arr.shape}".encode() + arr.tobytes())
    return h.hexdigest()[:16]


class RunFolder:
    """The files of one run (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- layout ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def per_query_path(self) -> Path:
        return self.path / "test_per_query.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def splits_dir(self) -> Path:
        return self.path / "splits"

    @property
    def manifest_path(self) -> Path:
        return self.splits_dir / "manifest.json"

    def file(self, name: str) -> Path:
        """A task's extra file or folder in the run (e.g. ``ood.json``, ``ood/``)."""
        return self.path / name

    def relative(self, path: str | Path) -> str:
        """``path`` as the run records it: relative to the folder, with '/'."""
        return Path(os.path.relpath(path, self.path)).as_posix()

    # --- reading --------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_path.is_file()

    def finished(self) -> bool:
        return self.metrics_path.is_file()

    def saved_config(self) -> dict:
        """config.yaml as written (a dict with its task)."""
        if not self.config_path.is_file():
            missing = " (the folder does not exist)" if not self.path.exists() else ""
            raise FileNotFoundError(f"{self.path} has no config.yaml: not a rankopt run folder{missing}")
        try:
            saved = yaml.safe_load(self.config_path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ValueError(f"{self.config_path} is not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{self.config_path} does not hold a run config")
        return saved

    def task(self) -> str:
        return self.saved_config().get("task", "images")

    def config(self, task: str | None = None) -> Any:
        """The config the run was trained with (``task``: refuse a run of another task, naming the
        command that reads it)."""
        saved = self.saved_config()
        found = saved.get("task", "images")
        if task is not None and found != task:
            command = " ".join(get_task(found).command) if found else found
            raise ValueError(f"{self.path} is a {found} run: use rankopt {command}")
        return from_dict(saved)

    def metrics(self) -> dict:
        """metrics.json of a finished run."""
        if not self.metrics_path.is_file():
            raise FileNotFoundError(
                f"{self.path} has no metrics.json: the run has not finished (resume it with --resume {self.path})"
            )
        try:
            return json.loads(self.metrics_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{self.metrics_path} is not valid JSON ({err})") from None

    def selected_checkpoint(self) -> Path:
        """The checkpoint whose weights the run's test evaluated: as metrics.json records it (best.ckpt,
        last.ckpt without validation, or the refitted model's)."""
        out = self.metrics()
        refit = (out.get("protocol") or {}).get("refit")
        if refit:
            rel = refit["checkpoint"]
        else:
            rel = (out.get("selection") or {}).get("checkpoint")
        if rel is None:  # metrics.json of a release that did not record it: best if there was one
            best = self.checkpoints / "best.ckpt"
            return best if best.is_file() else self.last_checkpoint
        path = self.path / rel
        if Path(rel).is_absolute() or not path.is_file():
            raise FileNotFoundError(f"{self.path}: the selected checkpoint {rel} is missing")
        return path

    def backbone_state(self) -> dict:
        """The backbone weights of the run's selected checkpoint (what another run may start from, e.g.
        ``rankopt train --set model.weights=RUN`` from a pre-training run)."""
        from rankopt.io import read_model_weights

        task = get_task(self.task())
        if task.backbone is None:
            raise ValueError(f"{self.path} is a {task.name} run: it has no backbone to start another run from")
        state = read_model_weights(self.selected_checkpoint(), prefix=task.backbone)
        if not state:
            raise ValueError(f"{self.path}: its selected checkpoint holds no weights under {task.backbone!r}")
        return state

    def check_backbone_for(self, backbone: str, in_channels: int) -> None:
        """Refuse, before any work, to start a ``backbone`` model from this run when the run trained another
        backbone or channel count (``model.weights=RUN``)."""
        task = get_task(self.task())
        if task.backbone is None:
            raise ValueError(f"model.weights={self.path}: a {task.name} run has no backbone to start from")
        model = self.config().model
        if (model.backbone, model.in_channels) != (backbone, in_channels):
            raise ValueError(
                f"model.weights={self.path}: that run trained a {model.backbone} on {model.in_channels}-channel "
                f"images, not the {backbone} on {in_channels}-channel images asked for here"
            )
        self.selected_checkpoint()  # finished, with its checkpoint: refused now rather than after loading data

    def read_per_query(self, id_column: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """test_per_query.csv: the id column and each metric column (empty cells → NaN)."""
        import csv

        path = self.per_query_path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the run was tested before per-query values were saved; evaluate it again"
            )
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:1] != [id_column]:
            raise ValueError(f"{path}: expected a header starting with {id_column!r}")
        header, body = rows[0], rows[1:]
        try:
            ids = np.array([int(r[0]) for r in body], dtype=np.int64)
            cols = {
                name: np.array([float(r[j]) if r[j] != "" else np.nan for r in body])
                for j, name in enumerate(header)
                if j
            }
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}: malformed row ({err})") from None
        return ids, cols

    # --- splits and data ----------------------------------------------------------------------
    def manifest(self) -> dict | None:
        """splits/manifest.json, or None for a folder written before it existed."""
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.manifest_path} is not valid JSON ({err})") from None

    def write_manifest(
        self,
        data_fingerprint: str,
        test_fingerprint: str,
        parts: dict[str, SplitItems] | None = None,
        extra: dict | None = None,
    ) -> None:
        """The data's fingerprint (``test_fingerprint``: of the test data alone, what comparisons pair
        runs on) and the items of every part (splits/<part>.txt), before training."""
        parts = parts or {}
        for name, part in parts.items():
            lines = [f"{i}\t{item}" if item != str(i) else str(i) for i, item in zip(part.indices.tolist(), part.items)]
            atomic_write_text(self.splits_dir / f"{name}.txt", "\n".join(lines) + "\n")
        manifest = {
            "format": MANIFEST_FORMAT,
            "fingerprint": data_fingerprint,
            "test_fingerprint": test_fingerprint,
            "parts": {
                name: {"split": p.split, "n": len(p.indices), "file": f"{name}.txt"} for name, p in parts.items()
            },
            **(extra or {}),
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2))

    def split_items(self, part: str) -> SplitItems | None:
        """The items of ``part`` as the run recorded them, or None (not recorded: an older run)."""
        manifest = self.manifest()
        if manifest is None or part not in manifest.get("parts", {}):
            return None
        info = manifest["parts"][part]
        path = self.splits_dir / info["file"]
        try:
            rows = [line.split("\t", 1) for line in path.read_text().splitlines() if line]
            indices = np.array([int(r[0]) for r in rows], dtype=np.int64)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} cannot be read ({err}); the run's item list is damaged") from None
        if len(indices) != info["n"]:
            raise ValueError(f"{path} lists {len(indices)} items but the manifest says {info['n']}")
        return SplitItems(info["split"], indices, [r[1] if len(r) > 1 else r[0] for r in rows])

    def check_data(self, current: str, what: str = "the data") -> None:
        """Refuse to read the run with data other than its own (fingerprints differ)."""
        manifest = self.manifest()
        recorded = None if manifest is None else manifest.get("fingerprint")
        if recorded is not None and recorded != current:
            raise DataChangedError(
                f"{what} of {self.path} changed since the run was trained (fingerprint {current}, recorded "
                f"{recorded}): "
                "its numbers would not be the run's; point data.root at the original files or train a new run"
            )

    def data_fingerprint(self, test: bool = False) -> str | None:
        """The recorded fingerprint of the run's data (``test``: of its test data alone); None: not recorded."""
        manifest = self.manifest()
        return None if manifest is None else manifest.get("test_fingerprint" if test else "fingerprint")

    # --- writing ------------------------------------------------------------------------------
    def write_config(self, cfg: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

    def write_results(self, out: dict, per_query: Any = None) -> None:
        """test_per_query.csv, then metrics.json (last, atomically: its presence marks a finished run)."""
        if per_query is not None:
            per_query.write_csv(self.per_query_path)
        atomic_write_text(self.metrics_path, json.dumps(out, indent=2))

    @contextlib.contextmanager
    def announced(self) -> Iterator[None]:
        """While rank 0 trains: the processes DDP launches read this folder from the environment."""
        os.environ[RUN_DIR_ENV] = str(self.path)
        try:
            yield
        finally:
            os.environ.pop(RUN_DIR_ENV, None)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's write lock; a second writer gets RunLockedError. The lock dies with the
        process (flock), so a killed run never leaves its folder locked."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunLockedError(
                    f"{self.path} is being written by {holder}: wait for it to finish, or write "
                    "the run to another folder"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- starting and resuming ------------------------------------------------------------------
    @classmethod
    def for_new_run(cls, cfg: Any, run_dir: str | Path | None) -> RunFolder:
        """The folder a new run writes: ``run_dir``, ``train.run_dir``, or runs/<recipe>-<time>.
        A folder that holds a run is refused (resume it instead)."""
        path = (
            run_dir
            or cfg.train.run_dir
            or (None if is_rank_zero() else os.environ.get(RUN_DIR_ENV))
            or f"runs/{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        folder = cls(path)
        if is_rank_zero() and (folder.last_checkpoint.exists() or folder.finished()):
            raise FileExistsError(
                f"{folder.path} already holds a run; resume it with --resume {folder.path} or choose another folder"
            )
        return folder

    def resume_config(self, overrides: list[str], task: str) -> tuple[Any, list[str]]:
        """The saved config with ``overrides`` applied and validated, and the keys they changed. A key
        a resume may not change (anything its checkpoints were trained with) is refused, naming it."""
        from rankopt.config import apply_overrides

        saved = self.saved_config()
        cfg = apply_overrides(self.config(task), overrides)
        changed = [k for k in changed_keys(saved, to_dict(cfg))]
        allowed = set(RESUMABLE) | set(get_task(cfg.task).resumable)
        refused = [k for k in changed if k not in allowed]
        if refused:
            flat_saved, flat_new = _flat(saved), _flat(to_dict(cfg))
            what = ", ".join(f"{k} ({flat_saved.get(k)!r} → {flat_new.get(k)!r})" for k in refused)
            raise ValueError(
                f"--resume cannot change {what}: {self.path}'s checkpoints were trained with the saved "
                f"value; start a new run (another --run-dir) to train with it. A resume may change "
                f"{', '.join(sorted(allowed))}"
            )
        return cfg, changed

    def check_resumable(self) -> Path:
        """The checkpoint a resume continues from (of a staged task: the latest stage's); refused when
        the run never finished an epoch."""
        stages = get_task(self.config().task).stages
        if stages:
            found = [self.path / s / "checkpoints" / "last.ckpt" for s in stages]
            found = [p for p in found if p.is_file()]
            if found:
                return found[-1]
        if not self.last_checkpoint.is_file():
            raise FileNotFoundError(
                f"{self.path} has no checkpoints/last.ckpt to resume from "
                "(the run ended before its first epoch: start it again)"
            )
        return self.last_checkpoint


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# what, changed by a resume, makes a finished run train further (the rest only says where it runs)
_CONTINUES = ("train.epochs", "train.patience", "train.min_epochs", "train.time_limit")


def start_run(cfg: Any, run_dir: str | Path | None = None, progress: bool = True) -> tuple[dict, RunFolder]:
    """Train a new run of ``cfg``'s task into ``run_dir`` (or its default); returns (metrics.json, folder)."""
    folder = RunFolder.for_new_run(cfg, run_dir)
    return _execute(cfg, folder, None, progress), folder


def resume_run(
    run_dir: str | Path, overrides: list[str] = (), task: str | None = None, progress: bool = True
) -> tuple[dict, RunFolder]:
    """Continue the run in ``run_dir`` from its last checkpoint (``overrides``: only the keys a resume may
    change, e.g. more epochs). A finished run that is not asked to train further is returned as it is,
    nothing written."""
    folder = RunFolder(run_dir)
    cfg, changed = folder.resume_config(list(overrides), task)
    if is_rank_zero() and folder.finished() and not set(changed) & set(_CONTINUES):
        return folder.metrics(), folder
    return _execute(cfg, folder, folder.check_resumable(), progress), folder


def _execute(cfg: Any, folder: RunFolder, resume: Path | None, progress: bool) -> dict:
    """The task's run function under the folder's write lock (rank 0 holds it; DDP's extra processes
    write nothing)."""
    run = get_task(cfg.task).run_function()
    with folder.lock() if is_rank_zero() else contextlib.nullcontext():
        if resume is not None and is_rank_zero() and folder.finished():
            # a finished run asked for more epochs: its result is kept aside until the new one is written
            os.replace(folder.metrics_path, folder.path / "metrics.previous.json")
        return run(cfg, folder, resume=resume, progress=progress)
