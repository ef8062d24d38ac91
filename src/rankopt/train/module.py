"""The LightningModules: ``RunModule``, what the run engine needs from every task (history, monitor,
test result), and ``RetrievalModule``, which wires an embedding model, a rankopt loss and
rankopt.metrics; nothing else.

Research code (what a step computes) lives in rankopt.losses and rankopt.metrics; these modules only
connect them with optimizer groups, schedules and logging. Determinism: the global RNG is re-seeded
from (seed, global step) before every step, and samplers draw from (seed, epoch), so a run resumed
from a checkpoint continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
import time

import lightning.pytorch as pl
import torch
from torch import nn

from rankopt.losses import CrossBatchMemory, Loss
from rankopt.losses.distributed import distributed_loss
from rankopt.models import EmbeddingModel
from rankopt.progress import progress_bar
from rankopt.train.config import OptimConfig
from rankopt.train.shards import evaluate_shards

__all__ = ["RunModule", "RetrievalModule"]


class RunModule(pl.LightningModule):
    """What the run engine (``rankopt.train.engine.fit``) reads from any task's module: the monitored
    metric, a per-epoch ``history`` kept in every checkpoint, and the test result.

    ``history``: one entry per epoch (from 1): the mean training loss, the training seconds of the
    epoch (validation excluded) and, where the epoch was validated, ``valid/<metric>``; saved in every
    checkpoint, so a resumed run keeps it whole. Determinism: the global RNG is re-seeded from (seed,
    global step) before every step.
    """

    lower_is_better = False  # the monitored metric: higher is better (map@r, top1) unless a task says so

    def __init__(self, seed: int = 0, monitor: str = "map@r", max_epochs: int = 1) -> None:
        super().__init__()
        self.seed, self.monitor, self.max_epochs = seed, monitor, max_epochs
        self._loss_sum, self._loss_weight, self._epoch_start = 0.0, 0, 0.0
        self.history: list[dict] = []
        self.valid_metrics: dict[str, float] = {}
        self.test_metrics: dict[str, float] = {}
        self.test_per_query = None  # per-query (per-user) values of the test, written to test_per_query.csv

    def _entry(self) -> dict:
        """The history entry of the current epoch (1-based), created on first use."""
        epoch = self.current_epoch + 1
        if not self.history or self.history[-1]["epoch"] != epoch:
            self.history = [h for h in self.history if h["epoch"] < epoch] + [{"epoch": epoch}]
        return self.history[-1]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rankopt_history"] = [dict(h) for h in self.history]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [dict(h) for h in checkpoint.get("rankopt_history", [])]

    def on_train_batch_start(self, batch, batch_idx) -> None:
        torch.manual_seed(hash((self.seed, self.global_step)) % (2**63))

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_weight = 0.0, 0
        self._epoch_start = time.perf_counter()

    def record_loss(self, value: torch.Tensor, weight: int = 1) -> None:
        """Add a step's loss to the epoch's mean (weighted by ``weight``) and the epoch's training time."""
        if not torch.isfinite(value):
            raise FloatingPointError(
                f"the loss is {float(value)} at epoch {self.current_epoch + 1}, step {self.global_step}"
            )
        self._loss_sum, self._loss_weight = self._loss_sum + float(value.detach()) * weight, self._loss_weight + weight
        entry = self._entry()
        entry["loss"] = self._loss_sum / self._loss_weight
        entry["seconds"] = time.perf_counter() - self._epoch_start


class RetrievalModule(RunModule):
    """Training steps on a rank loss; validation and test through rankopt.metrics, evaluated by shards
    (each process ranks its own queries against the whole gathered gallery, every query counted once).

    model: a rankopt :class:`~rankopt.models.EmbeddingModel` (or a subclass: backbone and head at their
    own learning rates, the backbone frozen for ``warmup_frozen_epochs``), or any ``nn.Module`` mapping
    a batch of inputs to (B, d) embeddings: its parameters train as one group at ``lr_head``."""

    def __init__(
        self,
        model: nn.Module,
        loss: Loss,
        optim: OptimConfig | None = None,
        seed: int = 0,
        eval_metrics: tuple[str, ...] = ("hit@1", "map@r", "ap"),
        max_epochs: int = 1,
        monitor: str = "map@r",
    ) -> None:
        super().__init__(seed=seed, monitor=monitor, max_epochs=max_epochs)
        if not isinstance(loss, Loss):
            raise TypeError(f"RetrievalModule trains a rankopt loss (rankopt.losses.Loss); got {type(loss).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"RetrievalModule trains an nn.Module returning embeddings; got {type(model).__name__}")
        self.model, self.loss = model, loss
        self.optim = optim or OptimConfig()
        self.two_parts = isinstance(model, EmbeddingModel)  # a backbone and a head, declared
        if self.optim.warmup_frozen_epochs and not self.two_parts:
            raise ValueError(
                f"optim.warmup_frozen_epochs={self.optim.warmup_frozen_epochs} freezes the model's backbone, "
                f"but {type(model).__name__} is not a rankopt EmbeddingModel (backbone + head)"
            )
        self._dim = model.dim if self.two_parts else None  # else learnt from the first embeddings seen
        self.eval_metrics = tuple(eval_metrics)
        self._outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # training ---------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if not self.optim.warmup_frozen_epochs:
            return
        frozen = self.current_epoch < self.optim.warmup_frozen_epochs
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen is False and self.model.freeze_bn:
            self.model.train()  # re-applies the BatchNorm freeze after unfreezing

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.model(images)
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2:
            raise ValueError(
                f"the model must return (B, d) embeddings; {type(self.model).__name__} returned "
                f"{tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__}"
            )
        self._dim = embeddings.shape[1]
        return embeddings

    def training_step(self, batch, batch_idx):
        images, labels, index = batch
        embeddings = self._embed(images)
        labels = labels[:, 0] if not self.loss.hierarchical and labels.ndim == 2 else labels
        # a memory with one slot per training item (ROADMAP's) is told which items the batch holds
        extra = {"indices": index} if isinstance(self.loss, CrossBatchMemory) and self.loss.unique else {}
        if self.trainer is not None and self.trainer.world_size > 1:
            # rank over the global batch (gathered with gradients); the loss module itself is not
            # wrapped, so checkpoints keep the same keys on 1 or N processes
            value = distributed_loss(self.loss, embeddings, labels, **extra)
        else:
            value = self.loss(embeddings, labels, **extra)
        self.record_loss(value)
        self.log("train/loss", value, prog_bar=True, on_step=True, on_epoch=True, batch_size=images.shape[0])
        return value

    # evaluation ------------------------------------------------------------------------------
    def _collect(self, batch, dataloader_idx: int) -> None:
        images, labels, index = batch
        self._outputs.setdefault(dataloader_idx, []).append(
            (self._embed(images).float().cpu(), labels.cpu(), index.cpu().to(torch.int64))
        )

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._collect(batch, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._collect(batch, dataloader_idx)

    def _evaluate(self, evalset, per_query: bool = False) -> dict[str, float]:
        """Metrics of the evaluation whose shards this process embedded (queries: loader 0, gallery: 1)."""
        parts = []
        for idx, ds in enumerate(evalset.parts):
            out = self._outputs.get(idx, [])
            # a process whose shard is empty still joins the gathers
            if not out and self._dim is None:
                raise RuntimeError("this process embedded no item and the model has no .dim: cannot join the gather")
            emb = torch.cat([o[0] for o in out]) if out else torch.empty(0, self._dim)
            lab = torch.cat([o[1] for o in out]) if out else torch.empty(0, ds.labels.shape[1], dtype=torch.int64)
            index = torch.cat([o[2] for o in out]) if out else torch.empty(0, dtype=torch.int64)
            parts.append((emb, lab if lab.ndim == 2 else lab.unsqueeze(1), index, len(ds)))
        self._outputs = {}
        q = parts[0]
        shown = self.trainer.progress_bar_callback is not None and self.trainer.is_global_zero
        with progress_bar(f"ranking {evalset.split}", enabled=None if shown else False) as bar:  # None: on a terminal
            metrics = evaluate_shards(
                q[0],
                q[1],
                q[2],
                q[3],
                parts[1] if len(parts) > 1 else None,
                metrics=list(self.eval_metrics),
                per_query=per_query,
                progress=bar,
            )
        if per_query:
            metrics, self.test_per_query = metrics
        return {k: int(v) if k.startswith("n_") else float(v) for k, v in metrics.items()}

    def on_validation_epoch_end(self) -> None:
        self.valid_metrics = self._evaluate(self.trainer.datamodule.valid)
        entry = self._entry()
        for k, v in self.valid_metrics.items():
            entry[f"valid/{k}"] = v
            if not k.startswith("n_"):  # every process holds the same numbers: the mean of equal values is that value
                self.log(f"valid/{k}", float(v), prog_bar=k in ("hit@1", self.monitor), sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._evaluate(self.trainer.datamodule.test, per_query=True)
        for k, v in self.test_metrics.items():
            if not k.startswith("n_"):
                self.log(f"test/{k}", float(v), sync_dist=True)

    # optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim
        if self.two_parts:
            groups = self.model.parameter_groups()
            param_groups = [
                {"params": groups["backbone"], "lr": o.lr_backbone, "name": "backbone"},
                {"params": groups["head"], "lr": o.lr_head, "name": "head"},
            ]
        else:
            param_groups = [{"params": list(self.model.parameters()), "lr": o.lr_head, "name": "model"}]
        proxies = self.loss.proxy_parameters()
        if proxies:
            param_groups.append({"params": proxies, "lr": o.lr_proxies or o.lr_head, "name": "proxies"})
        if o.optimizer == "sgd":
            opt = torch.optim.SGD(param_groups, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
        else:
            cls = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
            opt = cls(param_groups, weight_decay=o.weight_decay)
        if o.scheduler == "multistep":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=o.milestones, gamma=o.gamma)
        elif o.scheduler == "cosine":
            # each group's lr follows lr · (eta_min + (1 − eta_min)·½(1 + cos(π·epoch/epochs)))
            span = max(1, self.max_epochs)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda e: o.eta_min + (1 - o.eta_min) * 0.5 * (1 + math.cos(math.pi * e / span))
            )
        else:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
