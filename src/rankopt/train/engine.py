"""``fit``: train an embedding model with a rankopt loss through Lightning, into one run folder.

The run folder holds checkpoints/ (best.ckpt by the monitored test metric, last.ckpt; written
atomically), logs/version_N/metrics.csv (one version per start, so a resume never overwrites the
logs of the first part) and, from the CLI, the resolved config. Passing
``resume=RUN_DIR/checkpoints/last.ckpt`` continues a killed run exactly where its last epoch ended.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from rankopt.data.samplers import HierarchicalSampler, MPerClassSampler
from rankopt.train.checkpoint import AtomicCheckpointIO
from rankopt.train.module import RetrievalModule

__all__ = ["RetrievalData", "fit"]


class RetrievalData(pl.LightningDataModule):
    """Train batches from an m-per-class or hierarchical sampler (its share of every global batch on
    each process), test batches in order."""

    def __init__(self, train: Dataset, test: Dataset | None, batch_size: int, m: int = 4, sampler: str = "m_per_class",
                 seed: int = 0, num_workers: int = 0, eval_batch_size: int = 256) -> None:
        super().__init__()
        if sampler not in ("m_per_class", "hierarchical"):
            raise ValueError(f"sampler={sampler!r} is not m_per_class or hierarchical")
        self.train_set, self.test_set = train, test
        self.batch_size, self.m, self.sampler, self.seed = batch_size, m, sampler, seed
        self.num_workers, self.eval_batch_size = num_workers, eval_batch_size

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0
        cls = MPerClassSampler if self.sampler == "m_per_class" else HierarchicalSampler
        batches = cls(self.train_set.labels, self.batch_size, self.m, seed=self.seed, num_replicas=world, rank=rank)
        return DataLoader(self.train_set, batch_sampler=batches, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if self.test_set is None:
            return []
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)


def fit(module: RetrievalModule, data: RetrievalData, run_dir: str | Path, *, epochs: int, eval_every: int = 1,
        monitor: str = "test/map@r", resume: str | Path | None = None, accelerator: str = "auto", devices="auto",
        strategy: str = "auto", precision: str = "32-true", progress: bool = True) -> dict[str, float]:
    """Train for ``epochs`` epochs (from ``resume`` if given); returns the last test metrics."""
    run_dir = Path(run_dir)
    if resume is not None and not Path(resume).is_file():
        raise FileNotFoundError(f"checkpoint {resume} does not exist; expected RUN_DIR/checkpoints/last.ckpt")
    module.max_epochs = epochs
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="max",
                           save_top_k=1, enable_version_counter=False)
    # last.ckpt after every epoch, evaluated or not, so that a killed run loses at most one epoch
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0, save_last=True, every_n_epochs=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)
    trainer = pl.Trainer(
        max_epochs=epochs, default_root_dir=run_dir, accelerator=accelerator, devices=devices, strategy=strategy,
        precision=precision, plugins=[AtomicCheckpointIO()], callbacks=[best, last],
        logger=CSVLogger(run_dir, name="logs"), check_val_every_n_epoch=eval_every,  # a resume logs to a new version
        use_distributed_sampler=False, num_sanity_val_steps=0, enable_progress_bar=progress,
        enable_model_summary=False, deterministic=False, log_every_n_steps=10,
    )
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    return dict(module.last_metrics)
