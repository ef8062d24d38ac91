"""The LightningModule: wires an embedding model, a rankopt loss and rankopt.metrics; nothing else.

Research code (what a step computes) lives in rankopt.losses and rankopt.metrics; this module only
connects them with optimizer groups, schedules and logging. Determinism: the global RNG is re-seeded
from (seed, global step) before every step, and samplers draw from (seed, epoch), so a run resumed
from a checkpoint continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
from torch import nn

from rankopt.losses import DistributedLoss
from rankopt.metrics import evaluate
from rankopt.models import EmbeddingModel

__all__ = ["OptimConfig", "RetrievalModule"]


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | adamw | sgd
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    lr_proxies: float | None = None  # None: the head's learning rate
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    scheduler: str = "none"  # none | multistep | cosine
    milestones: list[int] = field(default_factory=list)  # multistep, in epochs
    gamma: float = 0.3  # multistep
    eta_min: float = 0.0  # cosine: final lr, as a fraction of each group's lr
    warmup_frozen_epochs: int = 0  # backbone frozen for the first epochs

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r} is not adam, adamw or sgd")
        if self.scheduler not in ("none", "multistep", "cosine"):
            raise ValueError(f"scheduler={self.scheduler!r} is not none, multistep or cosine")


class RetrievalModule(pl.LightningModule):
    def __init__(self, model: EmbeddingModel, loss: nn.Module, optim: OptimConfig | None = None, seed: int = 0,
                 eval_metrics: tuple[str, ...] = ("hit@1", "map@r", "ap"), max_epochs: int = 1) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.optim = optim or OptimConfig()
        self.seed, self.eval_metrics, self.max_epochs = seed, tuple(eval_metrics), max_epochs
        self._val_embeddings: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.last_metrics: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        # several processes: rank over the global batch (gathered with gradients), not each local part
        if self.trainer is not None and self.trainer.world_size > 1 and not isinstance(self.loss, DistributedLoss):
            self.loss = DistributedLoss(self.loss)

    # training ---------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx) -> None:
        torch.manual_seed(hash((self.seed, self.global_step)) % (2**63))

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.optim.warmup_frozen_epochs
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen is False and self.model.freeze_bn:
            self.model.train()  # re-applies the BatchNorm freeze after unfreezing

    def training_step(self, batch, batch_idx):
        images, labels, _ = batch
        embeddings = self.model(images)
        flat_only = not getattr(self.loss, "hierarchical", False)
        value = self.loss(embeddings, labels[:, 0] if flat_only and labels.ndim == 2 else labels)
        if not torch.isfinite(value):
            raise FloatingPointError(f"the loss is {float(value)} at epoch {self.current_epoch}, step {self.global_step}")
        self.log("train/loss", value, prog_bar=True, on_step=True, on_epoch=True, batch_size=images.shape[0])
        return value

    # evaluation ------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        images, labels, _ = batch
        self._val_embeddings.append(self.model(images).float().cpu())
        self._val_labels.append(labels.cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_embeddings:
            return
        emb = torch.cat(self._val_embeddings)
        lab = torch.cat(self._val_labels)
        self._val_embeddings, self._val_labels = [], []
        if self.trainer.world_size > 1:  # every process ranks the whole test set
            emb = self.all_gather(emb).flatten(0, 1)
            lab = self.all_gather(lab).flatten(0, 1)
        metrics = evaluate(emb, lab, metrics=list(self.eval_metrics))
        self.last_metrics = {k: int(v) if k.startswith("n_") else float(v) for k, v in metrics.items()}
        for k, v in metrics.items():
            if not k.startswith("n_"):
                self.log(f"test/{k}", float(v), prog_bar=k in ("hit@1", "map@r"), sync_dist=False)

    # optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim
        groups = self.model.parameter_groups()
        param_groups = [
            {"params": list(self.model.backbone.parameters()), "lr": o.lr_backbone, "name": "backbone"},
            {"params": groups["head"], "lr": o.lr_head, "name": "head"},
        ]
        proxies = self.loss.proxy_parameters() if hasattr(self.loss, "proxy_parameters") else []
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
