"""GalLoP / CoOp training on cached image features, through the run engine (``rankopt.train.engine.fit``):
steps touch the text tower (context vectors) and the local projection only; the test streams the test
images through the frozen image tower once and scores the learned prompts and the template (zero-shot)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rankopt.data.samplers import ShuffleBatchSampler
from rankopt.prompts.config import PromptRunConfig
from rankopt.prompts.data import FewShot, TowerFeatures
from rankopt.prompts.learners import PromptLearner, gallop_loss, predict
from rankopt.prompts.towers import Towers
from rankopt.train.module import RunModule

__all__ = ["PromptModule", "PromptData", "PerImage", "accuracy"]


def accuracy(predicted: np.ndarray, targets: np.ndarray, n_classes: int) -> dict:
    """top1 and the accuracy of every class (its mean: balanced accuracy), as fractions."""
    correct = predicted == targets
    per_class = [
        float(correct[targets == c].mean()) if (targets == c).any() else float("nan") for c in range(n_classes)
    ]
    return {"top1": float(correct.mean()), "per_class": per_class, "balanced": float(np.nanmean(per_class))}


class PerImage:
    """test_per_query.csv of a prompt run: one row per test image (its class, the prediction, whether it
    is right, and whether the same towers' zero-shot prediction is)."""

    def __init__(self, targets: np.ndarray, predicted: np.ndarray, zero_shot: np.ndarray) -> None:
        self.targets, self.predicted, self.zero_shot = targets, predicted, zero_shot

    def write_csv(self, path) -> None:
        rows = zip(self.targets, self.predicted, self.zero_shot)
        lines = ["query,label,predicted,top1,zero_shot_top1"] + [
            f"{i},{int(t)},{int(p)},{int(t == p)},{int(t == z)}" for i, (t, p, z) in enumerate(rows)
        ]
        from rankopt.atomic import atomic_write_text

        atomic_write_text(path, "\n".join(lines) + "\n")


class PromptData(pl.LightningDataModule):
    """Training batches of cached features (shuffled by (seed, epoch)); validation on cached features;
    the test split as images (streamed through the image tower once)."""

    def __init__(
        self,
        train: TowerFeatures,
        valid: TowerFeatures | None,
        shots: FewShot,
        batch_size: int,
        seed: int,
        test: TowerFeatures | None = None,
    ):
        super().__init__()
        self.train, self.valid, self.shots, self.batch_size, self.seed = train, valid, shots, batch_size, seed
        self.test = test  # the test split's cached features (model.feature_cache), else its images

    @property
    def selection_split(self) -> str | None:
        return None if self.valid is None else "valid"

    def train_dataloader(self) -> DataLoader:
        t = self.train  # every shot every epoch, in a fresh order (Lightning sets the sampler's epoch)
        sampler = ShuffleBatchSampler(len(t), self.batch_size, self.seed, drop_last=False)
        return DataLoader(TensorDataset(t.global_feat, t.local_feat, t.targets), batch_sampler=sampler)

    def val_dataloader(self):
        v = self.valid
        if v is None:  # no validation shots: the last epoch is kept
            return []
        return DataLoader(TensorDataset(v.global_feat, v.local_feat, v.targets), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        if self.test is not None:
            t = self.test
            return DataLoader(TensorDataset(t.global_feat, t.local_feat, t.targets), batch_size=256, shuffle=False)
        return DataLoader(self.shots.test, batch_size=64, shuffle=False)


class PromptModule(RunModule):
    def __init__(self, cfg: PromptRunConfig, towers: Towers, names: list[str]) -> None:
        super().__init__(seed=cfg.train.seed, monitor="top1", max_epochs=cfg.train.epochs)
        self.cfg = cfg
        shape = cfg.learner()
        self.dropout = shape["dropout"]
        self.learner = PromptLearner(
            towers.text, towers.alignment, names, shape["n_global"], shape["n_local"], shape["local_k"]
        )
        object.__setattr__(self, "towers", towers)  # frozen and large: outside the checkpoint
        self.extra: dict = {}
        self.probe = None  # linear_probe: the head fitted on the shots' global features
        self._outputs: list = []

    def on_fit_start(self) -> None:
        self.towers.to(self.device)

    on_test_start = on_fit_start

    def _scores(self, global_feat, local_feat, rows=None):
        gcos, lcos = self.learner.cosines(global_feat, local_feat, rows)
        return gcos, lcos, (self.learner.local_scores(lcos) if lcos is not None else None)

    def training_step(self, batch, batch_idx):
        g, loc, y = batch
        gcos, _, local = self._scores(g, loc)
        p = self.cfg.prompts
        loss = gallop_loss(gcos, local, y, p.logit_scale, self.dropout, replacement=p.dropout_draw == "replacement")
        self.record_loss(loss, len(y))
        return loss

    def configure_optimizers(self):
        o = self.cfg.optim
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.max_epochs)}

    # --- validation: cached features -------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch, batch_idx) -> None:
        g, loc, y = batch
        gcos, _, local = self._scores(g, loc)
        self._outputs.append((predict(gcos, local).argmax(1).cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        pred, y = (torch.cat(x).numpy() for x in zip(*self._outputs))
        self.valid_metrics = {"top1": accuracy(pred, y, self.learner.n_classes)["top1"]}
        self._entry()["valid/top1"] = self.valid_metrics["top1"]
        self.log("valid/top1", self.valid_metrics["top1"], prog_bar=True)

    # --- test: the images, once; learned prompts and the template ----------------------------------
    def on_test_epoch_start(self) -> None:
        self._outputs = []
        with torch.no_grad():
            self._rows = self.learner.prompt_rows()
            self._template = self.learner.template_rows()

    def test_step(self, batch, batch_idx) -> None:
        if batch[0].ndim == 4:  # images, through the frozen tower
            images, y, _ = batch
            g, loc = self.towers.image(images)
        else:  # cached features
            g, loc, y = batch[0], batch[1].float(), batch[2]
        learner, scale, method = self.learner, self.cfg.prompts.logit_scale, self.cfg.prompts.method
        zg, zl = learner.template_cosines(g, loc, self._template)
        zero_local = learner.local_scores(zl, (max(learner.local_k, default=1),))
        out = {
            "y": y.cpu(),
            "zero": predict(zg, None, scale).argmax(1).cpu(),
            "zero_local": predict(zero_local, None, scale).argmax(1).cpu(),
            "zero_gl": predict(zg, zero_local, scale).argmax(1).cpu(),
        }
        if self.cfg.trains_prompts:
            gcos, _, local = self._scores(g, loc, self._rows)
            out["pred"] = predict(gcos, local, scale).argmax(1).cpu()
            out["pred_global"] = predict(gcos, None, scale).argmax(1).cpu()
            if local is not None:
                out["pred_local"] = predict(local, None, scale).argmax(1).cpu()
        elif method == "linear_probe":
            out["pred"] = torch.from_numpy(self.probe.predict(g.cpu()))
        else:
            out["pred"] = out["zero"]
        self._outputs.append(out)

    def on_test_epoch_end(self) -> None:
        out = {k: [o[k] for o in self._outputs] for k in self._outputs[0]}
        y = torch.cat(out["y"]).numpy()
        c = self.learner.n_classes
        acc = lambda key: accuracy(torch.cat(out[key]).numpy(), y, c)
        learned = acc("pred")
        self.test_metrics = {
            "top1": learned["top1"],
            "balanced": learned["balanced"],
            "per_class": learned["per_class"],
            "n_images": int(len(y)),
        }
        for part in ("global", "local"):  # the two halves of GalLoP's prediction, each alone
            if f"pred_{part}" in out:
                self.test_metrics[f"top1_{part}"] = acc(f"pred_{part}")["top1"]
        self.extra["zero_shot"] = {
            "top1": acc("zero")["top1"],
            "top1_local": acc("zero_local")["top1"],
            "top1_gl": acc("zero_gl")["top1"],
            "per_class": acc("zero")["per_class"],
        }
        self.test_per_query = PerImage(y, torch.cat(out["pred"]).numpy(), torch.cat(out["zero"]).numpy())
