"""``fit``: the one run engine. Trains any task's module (image retrieval, recommendation) through
Lightning, selects on validation, tests the selected weights once.

The run folder holds checkpoints/ (``best.ckpt``: the best validation epoch; ``last.ckpt``: written
after *every* epoch, evaluated or not; both atomically) and logs/version_N/metrics.csv (one version
per start, so a resume never overwrites the logs of the first part). Passing
``resume=RUN_DIR/checkpoints/last.ckpt`` continues a killed run from the end of its last complete
epoch, exactly as the uninterrupted run would have gone on (samplers draw from (seed, epoch) or keep
their state in the checkpoint, the global RNG is re-seeded from (seed, step)). Selection, early
stopping and the time limit are callbacks on Lightning's public hooks (``BestCheckpoint``,
``Patience``, ``TimeLimit``), their state checkpointed with the rest; no private Lightning API is used.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, Timer, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from rankopt.data.samplers import HierarchicalSampler, MPerClassSampler
from rankopt.train.checkpoint import AtomicCheckpointIO
from rankopt.train.module import RunModule
from rankopt.train.protocol import EvalSet
from rankopt.train.shards import ShardSampler

__all__ = ["RetrievalData", "LastCheckpoint", "BestCheckpoint", "Patience", "TimeLimit", "fit", "test_only"]


class RetrievalData(pl.LightningDataModule):
    """Train batches from an m-per-class or hierarchical sampler (its share of every global batch on
    each process); evaluation sets in contiguous shards, one per process (each item embedded once)."""

    def __init__(
        self,
        train: Dataset,
        valid: EvalSet | Dataset | None,
        test: EvalSet | Dataset | None,
        batch_size: int,
        m: int = 4,
        sampler: str = "m_per_class",
        seed: int = 0,
        num_workers: int = 0,
        eval_batch_size: int = 256,
    ) -> None:
        super().__init__()
        if sampler not in ("m_per_class", "hierarchical"):
            raise ValueError(f"sampler={sampler!r} is not m_per_class or hierarchical")
        as_set = lambda s, name: s if s is None or isinstance(s, EvalSet) else EvalSet(name, s)
        self.train_set, self.valid, self.test = train, as_set(valid, "valid"), as_set(test, "test")
        self.batch_size, self.m, self.sampler, self.seed = batch_size, m, sampler, seed
        self.num_workers, self.eval_batch_size = num_workers, eval_batch_size

    @property
    def selection_split(self) -> str | None:
        """The split that selects the epoch (None: no validation, the last epoch is kept)."""
        return self.valid.split if self.valid is not None else None

    def _place(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._place()
        cls = MPerClassSampler if self.sampler == "m_per_class" else HierarchicalSampler
        batches = cls(self.train_set.labels, self.batch_size, self.m, seed=self.seed, num_replicas=world, rank=rank)
        return DataLoader(self.train_set, batch_sampler=batches, num_workers=self.num_workers)

    def _eval_loaders(self, evalset: EvalSet | None) -> list[DataLoader]:
        if evalset is None:
            return []
        world, rank = self._place()
        return [
            DataLoader(
                ds,
                batch_size=self.eval_batch_size,
                sampler=ShardSampler(len(ds), world, rank),
                num_workers=self.num_workers,
            )
            for ds in evalset.parts
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.valid)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test)


class LastCheckpoint(Callback):
    """last.ckpt at the end of every training epoch (after its validation, if any): a killed run loses
    at most the epoch in progress. Lightning's own ``save_last`` only writes alongside a top-k save."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)


class ValidateLastEpoch(Callback):
    """With eval_every > 1 the last epoch is validated too, so that it can be selected."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 == trainer.max_epochs:
            trainer.check_val_every_n_epoch = 1


def is_better(value: float, best: float, module: RunModule) -> bool:
    """Strictly better: higher, or lower where the module declares ``lower_is_better`` (a loss, a
    perplexity, a distance)."""
    return value < best if module.lower_is_better else value > best


class BestCheckpoint(Callback):
    """best.ckpt whenever a validation gives a strictly better ``monitor`` (:func:`is_better`; the first
    epoch wins a tie).
    Its state (best value and epoch) travels in every checkpoint; paths are the run folder's own, so a
    copied or moved run resumes with its own best.ckpt (Lightning's ModelCheckpoint stores absolute
    paths and forgets its best score when the folder moved)."""

    def __init__(self, path: str | Path, monitor: str) -> None:
        self.path, self.monitor = Path(path), monitor
        self.best_value: float | None = None
        self.best_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return f"BestCheckpoint[{self.monitor}]"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if self.best_value is None or is_better(value, self.best_value, pl_module):
            self.best_value, self.best_epoch = value, trainer.current_epoch + 1
            trainer.save_checkpoint(self.path, weights_only=False)

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # a checkpoint of an earlier release holds ModelCheckpoint's state instead: its best score
        if self.state_key in checkpoint.get("callbacks", {}):
            return
        for key, state in checkpoint.get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
                score = float(state["best_model_score"])  # logged as float32: the history has the exact value
                history = [h for h in checkpoint.get("rankopt_history", []) if self.monitor in h]
                first = next((h for h in history if abs(h[self.monitor] - score) <= 1e-6 * max(1.0, abs(score))), None)
                self.best_value = score if first is None else first[self.monitor]
                self.best_epoch = None if first is None else first["epoch"]


class Patience(Callback):
    """Stop after ``patience`` validations without a strictly better ``monitor``, and stay stopped when
    a run that had stopped is resumed. ``min_epochs``: it does not end a run before that epoch (slow
    starters plateau first); counting goes on, so the first validation from then on stops a run that
    has not improved in ``patience``. The time limit is not held back by it."""

    def __init__(self, monitor: str, patience: int, min_epochs: int = 0) -> None:
        self.monitor, self.patience, self.min_epochs = monitor, patience, min_epochs
        self.best: float | None = None
        self.wait = 0

    @property
    def state_key(self) -> str:
        return f"Patience[{self.monitor}]"

    def _stop_allowed(self, trainer: pl.Trainer, epoch: int) -> bool:
        return self.wait >= self.patience and epoch >= self.min_epochs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_allowed(trainer, trainer.current_epoch):  # restored after the stop
            trainer.should_stop = True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if self.best is None or is_better(value, self.best, pl_module):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        if self._stop_allowed(trainer, trainer.current_epoch + 1):
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self.state_key in checkpoint.get("callbacks", {}):
            return
        for key, state in checkpoint.get("callbacks", {}).items():  # an earlier release's EarlyStopping
            if key.startswith("EarlyStopping") and "wait_count" in state:
                best = state.get("best_score")
                self.wait = int(state["wait_count"])
                self.best = None if best is None or not bool(torch.isfinite(torch.as_tensor(best))) else float(best)


class TimeLimit(Timer):
    """Lightning's Timer (wall-clock seconds of fitting, validation included, kept across a resume),
    checked when an epoch's last training batch ends: the epoch that crosses the limit is validated,
    so that it can be selected, and is the last."""

    def __init__(self, seconds: float) -> None:
        super().__init__(duration={"seconds": seconds}, interval="epoch", verbose=False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if batch_idx + 1 >= trainer.num_training_batches and self.time_remaining() <= 0:
            trainer.check_val_every_n_epoch = 1
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass  # checked at the last batch instead, before the validation decision


class EpochBar(TQDMProgressBar):
    """Lightning's progress bar with epochs counted from 1, as in the history and metrics.json."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")


# Lightning's messages that say nothing about the run: a deprecation inside its own code (newer torch),
# a data-loader note about our step datasets (one process per loader), the logging interval of short epochs
_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"Your `IterableDataset` has `__len__` defined.*",
    r"The number of training batches \(\d+\) is smaller than the logging interval.*",
    r"Total length of `list` across ranks is zero.*",  # no validation set: nothing to validate, on purpose
)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        for message in _NOISE:
            warnings.filterwarnings("ignore", message=message)
        yield


def check_checkpoint(path: str | Path, module: pl.LightningModule) -> None:
    """Refuse, in one line and before any work, a checkpoint to resume from that is missing, unreadable
    (truncated, empty, foreign bytes) or of another model (another task's, another config's)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; expected RUN_DIR/checkpoints/last.ckpt")
    try:
        # mmap: the names and shapes are read, not the weights (a ResNet-50's with Adam: seconds)
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as err:
        first = " ".join(str(err).split())[:160] or type(err).__name__
        raise ValueError(
            f"checkpoint {path} cannot be read as a rankopt checkpoint ({first}); the file is damaged or not one"
        ) from None
    # parameters only: buffers such as a memory bank's are created lazily and may be absent from either side
    expected = {name: p.shape for name, p in module.named_parameters()}
    missing = sorted(n for n in expected if n not in state)
    reshaped = sorted(n for n in expected if n in state and tuple(state[n].shape) != tuple(expected[n]))
    if missing or reshaped:
        raise ValueError(
            f"checkpoint {path} is not of this run's model: {len(missing)} of its weights missing (e.g. "
            f"{missing[:2]}), {len(reshaped)} of another shape (e.g. {reshaped[:2]})"
        )


def _epoch_of(checkpoint: Path) -> int:
    """The (1-based) epoch a checkpoint saved by LastCheckpoint or ModelCheckpoint ends."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1


def fit(
    module: RunModule,
    data: pl.LightningDataModule,
    run_dir: str | Path,
    *,
    epochs: int,
    eval_every: int = 1,
    resume: str | Path | None = None,
    accelerator: str = "auto",
    devices="auto",
    strategy: str = "auto",
    precision: str = "32-true",
    progress: bool = True,
    patience: int = 0,
    time_limit: float | None = None,
    min_epochs: int = 0,
) -> dict:
    """Train for ``epochs`` epochs (from ``resume`` if given), then test the selected weights once.

    ``data`` has the evaluation loaders and ``selection_split`` (None: no validation). Selection: the
    epoch with the best ``valid/<monitor>`` (the first one on ties); without a validation set, the
    last epoch. ``patience``: stop after that many validations without a better value (0: never), not
    before epoch ``min_epochs``;
    ``time_limit``: stop after the epoch that reaches that many seconds. Returns {"test", "selection",
    "valid", "history", "test_per_query", "is_global_zero"}.
    """
    run_dir = Path(run_dir)
    if resume is not None:
        check_checkpoint(resume, module)
    module.max_epochs = epochs
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[Callback] = [LastCheckpoint(ckpt_dir / "last.ckpt"), ValidateLastEpoch()] + (
        [EpochBar()] if progress else []
    )
    best = None
    split = data.selection_split
    if split is not None:
        best = BestCheckpoint(ckpt_dir / "best.ckpt", f"valid/{module.monitor}")
        callbacks.insert(0, best)
        if patience:
            callbacks.append(Patience(f"valid/{module.monitor}", patience, min_epochs))
    if time_limit is not None:
        callbacks.append(TimeLimit(time_limit))
    try:
        trainer = pl.Trainer(
            max_epochs=epochs,
            default_root_dir=run_dir,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision=precision,
            plugins=[AtomicCheckpointIO()],
            callbacks=callbacks,
            logger=CSVLogger(run_dir, name="logs"),
            check_val_every_n_epoch=eval_every,  # a resume logs to a new version
            use_distributed_sampler=False,
            num_sanity_val_steps=0,
            enable_progress_bar=progress,
            enable_model_summary=False,
            enable_checkpointing=False,  # best.ckpt and last.ckpt are ours: no Lightning default beside them
            deterministic=False,
            log_every_n_steps=10,
        )
    except (TypeError, ValueError, RuntimeError) as err:  # the constructor only checks these settings
        raise ValueError(
            f"the trainer cannot run with accelerator={accelerator!r}, devices={devices!r}, "
            f"strategy={strategy!r}, precision={precision!r} here: {err}"
        ) from None
    with _quiet():
        try:
            trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
        except SystemExit:
            if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1): give it back as what it was
                raise KeyboardInterrupt from None
            raise
    history = [dict(entry) for entry in module.history]
    selected = ckpt_dir / "best.ckpt" if best is not None and best.best_epoch is not None else ckpt_dir / "last.ckpt"
    epoch = _epoch_of(selected)
    with _quiet():
        trainer.test(module, datamodule=data, ckpt_path=str(selected), verbose=False, weights_only=True)
    module.history = history  # the test loaded the selected checkpoint's (shorter) history
    key = f"valid/{module.monitor}"
    chosen = next((h for h in history if h["epoch"] == epoch), {})
    selection = {
        "split": split,
        "metric": module.monitor,
        "value": chosen.get(key),
        "epoch": epoch,
        "epochs_run": len(history),
        "checkpoint": selected.relative_to(ckpt_dir.parent).as_posix(),
    }
    valid = {k[len("valid/") :]: v for k, v in chosen.items() if k.startswith("valid/")}
    return _result(module, trainer, selection, valid, history)


def _result(module: RunModule, trainer: pl.Trainer, selection: dict | None, valid: dict, history: list) -> dict:
    return {
        "test": dict(module.test_metrics),
        "selection": selection,
        "valid": valid,
        "history": history,
        "is_global_zero": trainer.is_global_zero,
        "test_per_query": module.test_per_query,
    }


def test_only(
    module: RunModule, data: pl.LightningDataModule, *, accelerator: str = "auto", devices="auto", progress: bool = True
) -> dict:
    """Test ``module`` once, untrained (a baseline with nothing to fit by gradient: a template, a probe
    fitted beforehand); the same result keys as :func:`fit`, with no selection, validation or history."""
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with _quiet():
        trainer.test(module, datamodule=data, verbose=False)
    return _result(module, trainer, None, {}, [])
