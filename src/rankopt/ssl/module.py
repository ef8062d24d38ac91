"""Self-distillation on the run engine: the student/teacher LightningModule of ``rankopt pretrain`` and
the data module that feeds it unlabeled images.

One training step (Franca / DINOv2, valeoai/Franca ``ssl_meta_arch.forward_backward``):

1. multi-crop each image: 2 global crops and ``crops.n_local`` local crops (:mod:`rankopt.ssl.crops`);
   with iBOT, a share of the global crops gets a patch mask (:mod:`rankopt.ssl.masking`);
2. the EMA teacher embeds the global crops (unmasked); its head's logits become targets by
   Sinkhorn–Knopp or centering at the scheduled teacher temperature, per nested level, the two global
   crops swapped (each student global crop is taught by the *other* view);
3. the student embeds every crop (the masked patches replaced by its mask token): DINO cross-entropy of
   each student crop against each teacher global crop of another view, averaged over the 2 + 2·n_local
   pairs and summed over the levels; KoLeo on the student's global embeddings (per crop); iBOT's
   cross-entropy on the masked patches against the teacher's targets for the same patches;
4. AdamW with the scheduled learning rate and weight decay (biases and norms without decay; the
   prototypes frozen for the first epochs), gradients clipped per part; then the teacher follows the
   student by EMA at the scheduled momentum.

The global RNG, the crops and the masks are seeded from (seed, step), the batches from (seed, epoch):
a resumed run continues exactly. Validation and test evaluate the *teacher's* frozen backbone
(:mod:`rankopt.ssl.evaluation`).
"""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt.data.samplers import ShuffleBatchSampler
from rankopt.models.backbones import BACKBONES, create_backbone
from rankopt.models.inputs import match_input
from rankopt.progress import progress_bar
from rankopt.ssl.config import SSLRunConfig
from rankopt.ssl.crops import MultiCrop
from rankopt.ssl.evaluation import Embedder, frozen_features, knn_accuracy, nested_retrieval, probe_accuracy, retrieval
from rankopt.ssl.heads import DINOHead, NestedHeads
from rankopt.ssl.losses import Centering, dino_cross_entropy, ibot_patch_loss, koleo, sinkhorn_knopp
from rankopt.ssl.masking import batch_masks
from rankopt.ssl.rasa import apply_rasa, fit_rasa, position_r2
from rankopt.ssl.schedules import cosine
from rankopt.train.module import RunModule
from rankopt.train.protocol import Splits

__all__ = ["SSLModule", "SSLData", "build_backbone", "build_head"]


def build_backbone(cfg: SSLRunConfig, weights=None) -> tuple[nn.Module, Embedder]:
    """The backbone of ``cfg`` (with ``weights`` if given) and its :class:`Embedder`."""
    m = cfg.model
    backbone = create_backbone(m.backbone, weights, m.in_channels)
    meta = BACKBONES.entry(m.backbone).meta
    rgb = meta["channels"] == 3
    prepare = None
    if rgb or m.image_size is not None:

        def prepare(x: torch.Tensor) -> torch.Tensor:
            return match_input(x, 3 if rgb else x.shape[1], m.image_size, imagenet_norm=rgb)

    return backbone, Embedder(backbone, bool(meta.get("patch_tokens")), prepare)


def build_head(cfg: SSLRunConfig, dim: int) -> nn.Module:
    h = cfg.head
    if h.kind == "dino":
        return DINOHead(dim, h.prototypes, h.hidden, h.bottleneck, h.layers)
    return NestedHeads(dim, h.prototypes, h.hidden, h.bottleneck, h.layers, h.levels, h.variant, h.normalize)


class _Once(Dataset):
    """One nominal item: validation and test evaluate whole splits themselves at the epoch's end."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> int:
        return 0


class SSLData(pl.LightningDataModule):
    """Training batches of images (labels dropped) from a seeded permutation per epoch, this process's
    share of each global batch under DDP."""

    def __init__(
        self, train: Dataset, batch_size: int, seed: int = 0, num_workers: int = 0, validate: bool = True
    ) -> None:
        super().__init__()
        self.train, self.batch_size, self.seed, self.num_workers = train, batch_size, seed, num_workers
        self.validate = validate

    @property
    def selection_split(self) -> str | None:
        return "valid" if self.validate else None

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ShuffleBatchSampler(len(self.train), self.batch_size, self.seed, world, rank)
        return DataLoader(self.train, batch_sampler=sampler, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(_Once(), batch_size=None) if self.validate else []

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Once(), batch_size=None)


class SSLModule(RunModule):
    """Student and EMA teacher (backbone + head, + iBOT head), trained by self-distillation."""

    def __init__(self, cfg: SSLRunConfig, splits: Splits, steps_per_epoch: int, weights=None) -> None:
        super().__init__(seed=cfg.train.seed, monitor=cfg.train.monitor, max_epochs=cfg.train.epochs)
        self.cfg, self.splits, self.steps_per_epoch = cfg, splits, steps_per_epoch
        self.initial_weights = weights  # what "init" evaluates: the same start as the student's
        backbone, self.embed_student = build_backbone(cfg, weights)
        dim = backbone.out_channels
        self.student = nn.ModuleDict({"backbone": backbone, "head": build_head(cfg, dim)})
        if cfg.ibot:
            self.student["ibot_head"] = build_head(cfg, dim)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.embed_teacher = Embedder(
            self.teacher["backbone"], self.embed_student.patch_tokens, self.embed_student.prepare
        )
        lo = cfg.loss
        self.centers = self.ibot_centers = None  # centering's running means (Sinkhorn-Knopp keeps none)
        if lo.targets == "centering":
            self.centers = nn.ModuleList(Centering(k, lo.center_momentum) for k in self.student["head"].prototypes)
            if cfg.ibot:
                self.ibot_centers = nn.ModuleList(
                    Centering(k, lo.center_momentum) for k in self.student["ibot_head"].prototypes
                )
        c = cfg.crops
        size = splits.train[0][0].shape[-1]
        self.crops = MultiCrop(size, c.n_local, c.local_size, tuple(c.global_scale), tuple(c.local_scale))
        self.grid = None
        if cfg.ibot:
            side = backbone.n_patches(size if cfg.model.image_size is None else cfg.model.image_size)
            self.grid = (int(round(side**0.5)),) * 2
        self.init_results: dict = {}
        self.extra: dict = {}

    # schedules ----------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.steps_per_epoch

    def scheduled(self, step: int) -> dict[str, float]:
        """Every per-step value at ``step``: lr, weight decay, teacher momentum and temperature."""
        o, lo, spe, total = self.cfg.optim, self.cfg.loss, self.steps_per_epoch, self.total_steps
        return {
            "lr": cosine(step, total, o.lr, o.min_lr, warmup=o.warmup_epochs * spe),
            "weight_decay": cosine(step, total, o.weight_decay, o.weight_decay_end),
            "momentum": cosine(step, total, o.momentum_teacher, o.final_momentum),
            "teacher_temp": cosine(
                step,
                total,
                lo.teacher_temp,
                lo.teacher_temp,
                warmup=lo.warmup_teacher_temp_epochs * spe,
                start=lo.warmup_teacher_temp,
            ),
        }

    # training -----------------------------------------------------------------------------------
    def _distributed(self):
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.get_world_size(), dist.all_reduce
        return 1, None

    def _targets(self, logits: list[torch.Tensor], temp: float, centers) -> list[torch.Tensor]:
        world, reduce = self._distributed()
        if self.cfg.loss.targets == "sinkhorn":
            return [sinkhorn_knopp(t, temp, self.cfg.loss.sinkhorn_iterations, distributed=world > 1) for t in logits]
        out = [centre.targets(t, temp) for centre, t in zip(centers, logits)]
        for centre, t in zip(centers, logits):
            centre.update(t, reduce, world)
        return out

    def training_step(self, batch, batch_idx):
        images = batch[0]
        cfg, lo = self.cfg, self.cfg.loss
        b = len(images)
        step_seed = hash((self.seed, self.global_step)) % (2**63)
        views = self.crops(images, torch.Generator().manual_seed(step_seed))
        global_crops = torch.cat(views[:2])  # (2B, C, H, W): crop 1 of every image, then crop 2
        temp = self.scheduled(self.global_step)["teacher_temp"]
        masks = None
        if cfg.ibot:
            rng = np.random.default_rng(step_seed)
            masks = torch.from_numpy(
                batch_masks(lo.masking, 2 * b, self.grid, tuple(lo.mask_ratio), lo.mask_probability, rng)
            ).to(images.device)

        with torch.no_grad():
            t_cls, t_patches = self.embed_teacher(global_crops)
            t_cls = torch.cat([t_cls[b:], t_cls[:b]])  # the other view teaches each student crop
            targets = self._targets(self.teacher["head"](t_cls), temp, self.centers)
            if masks is not None and masks.any():
                t_masked = self.teacher["ibot_head"](t_patches[masks])
                ibot_targets = self._targets(t_masked, temp, self.ibot_centers)

        s_cls, s_patches = self.embed_student(global_crops, masks)
        n_terms = 2 + 2 * len(views[2:])
        loss_global = (
            sum(
                2 * dino_cross_entropy(s, t, lo.student_temp)  # the two (crop, other crop) pairs
                for s, t in zip(self.student["head"](s_cls), targets)
            )
            / n_terms
        )
        loss_local = s_cls.new_zeros(())
        if len(views) > 2:
            l_cls, _ = self.embed_student(torch.cat(views[2:]))
            for s, t in zip(self.student["head"](l_cls), targets):
                for crop in s.chunk(len(views) - 2):
                    loss_local = loss_local + sum(dino_cross_entropy(crop, tg, lo.student_temp) for tg in t.chunk(2))
            loss_local = loss_local / n_terms
        loss = loss_global + loss_local
        parts = {"dino": float(loss.detach())}
        if lo.koleo:
            loss_koleo = lo.koleo * sum(koleo(chunk) for chunk in s_cls.chunk(2))  # never across views of one image
            loss = loss + loss_koleo
            parts["koleo"] = float(loss_koleo.detach())
        if masks is not None and masks.any():
            image_of_patch = masks.nonzero()[:, 0]
            s_masked = self.student["ibot_head"](s_patches[masks])
            loss_ibot = sum(
                ibot_patch_loss(s, t, image_of_patch, 2 * b, lo.student_temp) for s, t in zip(s_masked, ibot_targets)
            )
            loss = loss + lo.ibot * loss_ibot
            parts["ibot"] = float(loss_ibot.detach())
        self.record_loss(loss)
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=b)
        return loss

    def on_train_batch_start(self, batch, batch_idx) -> None:
        super().on_train_batch_start(batch, batch_idx)
        values = self.scheduled(self.global_step)
        frozen_last = self.current_epoch < self.cfg.optim.freeze_last_layer_epochs
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = 0.0 if group["last_layer"] and frozen_last else values["lr"]
            group["weight_decay"] = values["weight_decay"] if group["decay"] else 0.0

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.cfg.optim.clip_grad:
            for part in self.student.values():  # per part, as DINOv2 clips backbone and heads apart
                nn.utils.clip_grad_norm_(part.parameters(), self.cfg.optim.clip_grad)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.update_teacher(self.scheduled(self.global_step)["momentum"])  # global_step counts the step just taken

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher ← m · teacher + (1 − m) · student, parameter by parameter."""
        for name, part in self.student.items():
            for ps, pt in zip(part.parameters(), self.teacher[name].parameters()):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)

    def configure_optimizers(self):
        groups: dict[tuple[bool, bool], list] = {}
        last = {
            id(p)
            for k in ("head", "ibot_head")
            if k in self.student
            for layer in self.student[k].last_layers()
            for p in layer.parameters()
        }
        for name, p in self.student.named_parameters():
            decay = p.ndim > 1 and not name.endswith(".g")  # no decay for biases, norms, weight-norm gains
            groups.setdefault((decay, id(p) in last), []).append(p)
        params = [
            {"params": ps, "decay": decay, "last_layer": is_last, "lr": self.cfg.optim.lr}
            for (decay, is_last), ps in groups.items()
        ]
        return torch.optim.AdamW(params, lr=self.cfg.optim.lr, betas=(0.9, 0.999))

    # evaluation ---------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx) -> None:
        pass  # the whole validation split is evaluated once, at the epoch's end

    def test_step(self, batch, batch_idx) -> None:
        pass

    def _bar(self, label: str):
        shown = self._trainer is not None and self.trainer.progress_bar_callback is not None
        return progress_bar(label, enabled=None if shown else False, unit="image")

    def _features(self, embed: Embedder, dataset, label: str, patches: int = 0):
        with self._bar(f"features: {label}") as bar:
            return frozen_features(embed, dataset, num_workers=self.cfg.data.num_workers, patches=patches, progress=bar)

    def _bank(self, limit: int | None):
        train = self.splits.train
        if limit is not None and limit < len(train):
            from rankopt.data import Subset

            train = Subset(train, np.arange(limit))
        return train

    def evaluate_backbone(self, embed: Embedder, queries, bank, per_query: bool = False) -> tuple[dict, object]:
        """Retrieval on ``queries`` (leave-one-out) and k-NN against ``bank``, with ``embed``'s features."""
        e, metrics = self.cfg.eval, [m for m in self.cfg.train.metrics if m != "knn_acc"]
        q, ql, _ = self._features(embed, queries, "queries")
        bk, bl, _ = self._features(embed, bank, "k-NN bank")
        out = retrieval(q, ql, metrics, per_query)
        summary, result = out if per_query else (out, None)
        summary["knn_acc"] = knn_accuracy(bk, bl[:, 0], q, ql[:, 0], e.knn_k, e.knn_temperature)
        return summary, (result, q, ql, bk, bl)

    def on_validation_epoch_end(self) -> None:
        self.valid_metrics, _ = self.evaluate_backbone(
            self.embed_teacher, self.splits.valid.queries, self._bank(self.cfg.eval.bank)
        )
        entry = self._entry()
        for k, v in self.valid_metrics.items():
            entry[f"valid/{k}"] = v
            if not k.startswith("n_"):
                self.log(f"valid/{k}", float(v), prog_bar=k in ("knn_acc", self.monitor))

    def on_test_epoch_end(self) -> None:
        cfg, e = self.cfg, self.cfg.eval
        test, bank = self.splits.test.queries, self._bank(None)
        metrics, (result, q, ql, bk, bl) = self.evaluate_backbone(self.embed_teacher, test, bank, per_query=True)
        if e.probe:
            metrics["probe_acc"] = probe_accuracy(bk, bl[:, 0], q, ql[:, 0], seed=cfg.train.seed)
        self.test_metrics, self.test_per_query = metrics, result
        head = self.teacher["head"]
        if isinstance(head, NestedHeads) and head.variant == "slice":
            self.extra["nested"] = nested_retrieval(q, ql, head.widths, ["map@r", "hit@1"])
        if self.embed_teacher.patch_tokens and e.rasa_iterations:
            self.extra["rasa"] = self._rasa(self.embed_teacher, bank, test)
        # what pre-training bought: the same evaluation of the untrained initialisation of the backbone
        torch.manual_seed(cfg.train.seed)  # the run's own initial weights (the run seeds the same way)
        _, init_embed = build_backbone(cfg, self.initial_weights)
        init_embed.backbone.to(self.device)
        init, (_, iq, iql, ibk, ibl) = self.evaluate_backbone(init_embed, test, bank)
        if e.probe:
            init["probe_acc"] = probe_accuracy(ibk, ibl[:, 0], iq, iql[:, 0], seed=cfg.train.seed)
        self.extra["init"] = init

    def _rasa(self, embed: Embedder, bank, test) -> dict:
        """RASA fitted on training patches; the position probe's R² on test patches before and after."""
        e = self.cfg.eval
        _, _, train_patches = self._features(embed, self._subset(bank, e.rasa_images), "RASA fit", e.rasa_images)
        _, _, test_patches = self._features(embed, self._subset(test, e.rasa_images), "RASA test", e.rasa_images)
        half = len(train_patches) // 2  # the probe is fitted on other images than RASA's directions
        directions = fit_rasa(train_patches[:half], self.grid_eval(train_patches), e.rasa_iterations)
        grid = self.grid_eval(train_patches)
        before = position_r2(train_patches[half:], test_patches, grid)
        after = position_r2(apply_rasa(train_patches[half:], directions), apply_rasa(test_patches, directions), grid)
        return {
            "iterations": e.rasa_iterations,
            "position_r2_before": before,
            "position_r2_after": after,
            "images": len(test_patches),
        }

    @staticmethod
    def grid_eval(patches: torch.Tensor) -> tuple[int, int]:
        side = int(round(patches.shape[1] ** 0.5))
        return side, side

    @staticmethod
    def _subset(dataset, n: int):
        from rankopt.data import Subset

        return dataset if n >= len(dataset) else Subset(dataset, np.arange(n))
