"""The three training stages of ``rankopt drive`` as modules of the run engine
(``rankopt.train.engine.fit``): each selects its epoch on the validation episodes and is tested once
on the test episodes.

* :class:`TokenizerModule` — the VQ-VAE on single frames; monitor PSNR (dB, higher is better).
* :class:`VideoModule` — VaViM's next-token prediction on token windows; monitor perplexity (lower);
  the test also scores the copy-the-last-frame baseline (its copy probability fitted on training).
* :class:`ActionModule` — VaVAM's flow matching with the GPT frozen (pre-trained, or random for the
  ablation); monitor minADE@k (m, lower) of ``samples`` trajectories of the windows' last frames; the
  test also scores the constant-velocity baseline on the same windows.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rankopt.runs import PerQueryRows
from rankopt.train.module import RunModule
from rankopt.world.models import JointModel, VideoGPT
from rankopt.world.objectives import flow_matching_step, next_token_loss, sample_trajectories
from rankopt.world.sequences import Windows, copy_last_frame_nll
from rankopt.world.tokenizer import VQVAE
from rankopt.world.trajectories import min_ade

__all__ = ["TokenizerModule", "VideoModule", "ActionModule", "StageData", "window_tensors"]


def window_tensors(w: Windows) -> TensorDataset:
    return TensorDataset(w.tokens, w.commands, w.waypoints, w.speed)


class StageData(pl.LightningDataModule):
    """Train / valid / test tensors of one stage (frames, or windows), shuffled by (seed, epoch)."""

    def __init__(self, train, valid, test, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.valid, self.test, self.batch_size, self.seed = train, valid, test, batch_size, seed

    @property
    def selection_split(self) -> str:
        return "valid"

    def train_dataloader(self) -> DataLoader:
        from rankopt.data.samplers import ShuffleBatchSampler

        sampler = ShuffleBatchSampler(len(self.train), self.batch_size, self.seed, drop_last=False)
        return DataLoader(self.train, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid, batch_size=4 * self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=4 * self.batch_size)


class _Means(RunModule):
    """Evaluation as sums over batches, divided at the end."""

    def _reset(self) -> None:
        self._sums: dict[str, float] = {}

    def _add(self, **values: tuple[float, int]) -> None:
        for k, (total, n) in values.items():
            s, m = self._sums.get(k, (0.0, 0))
            self._sums[k] = (s + total, m + n)

    def _means(self) -> dict[str, float]:
        return {k: s / max(n, 1) for k, (s, n) in self._sums.items()}

    def _validated(self, metrics: dict[str, float]) -> None:
        self.valid_metrics = metrics
        entry = self._entry()
        for k, v in metrics.items():
            entry[f"valid/{k}"] = v
        self.log(f"valid/{self.monitor}", metrics[self.monitor], prog_bar=True)

    on_validation_epoch_start = on_test_epoch_start = lambda self: self._reset()


class TokenizerModule(_Means):
    def __init__(self, vqvae: VQVAE, lr: float, seed: int, epochs: int) -> None:
        super().__init__(seed=seed, monitor="psnr", max_epochs=epochs)
        self.vqvae, self.lr = vqvae, lr

    def training_step(self, batch, batch_idx):
        (frames,) = batch
        _, _, loss = self.vqvae(frames)
        self.record_loss(loss, len(frames))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.vqvae.parameters(), lr=self.lr)

    def _score(self, batch) -> None:
        (frames,) = batch
        codes = self.vqvae.encode(frames)
        recon = self.vqvae.decode(codes)
        self._add(mse=(float(((recon - frames) ** 2).mean((1, 2, 3)).sum()), len(frames)))
        self._codes.append(codes.cpu())

    def on_validation_epoch_start(self) -> None:
        self._reset()
        self._codes = []

    on_test_epoch_start = on_validation_epoch_start
    validation_step = test_step = lambda self, batch, batch_idx: self._score(batch)

    def _metrics(self) -> dict[str, float]:
        mse = self._means()["mse"]
        usage = self.vqvae.quantizer.usage(torch.cat(self._codes))
        return {"psnr": 10 * math.log10(1 / max(mse, 1e-12)), "mse": mse, **usage}

    def on_validation_epoch_end(self) -> None:
        self._validated(self._metrics())

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._metrics()


class VideoModule(_Means):
    lower_is_better = True

    def __init__(self, gpt: VideoGPT, lr: float, seed: int, epochs: int, p_copy: float) -> None:
        super().__init__(seed=seed, monitor="perplexity", max_epochs=epochs)
        self.gpt, self.lr, self.p_copy = gpt, lr, p_copy

    def training_step(self, batch, batch_idx):
        tokens = batch[0]
        loss = next_token_loss(self.gpt, tokens)
        self.record_loss(loss, len(tokens))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.gpt.parameters(), lr=self.lr, weight_decay=0.01)

    def _score(self, batch) -> None:
        tokens = batch[0]
        logits = self.gpt(tokens)[:, :-1]
        flat = tokens.reshape(len(tokens), -1)[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), flat, reduction="sum")
        right = (logits.argmax(-1) == flat).sum()
        # the copy baseline predicts frames 2..T only: compared on the same tokens
        per_frame = self.gpt.per_frame
        later = torch.nn.functional.cross_entropy(
            logits[:, per_frame - 1 :].transpose(1, 2), flat[:, per_frame - 1 :], reduction="sum"
        )
        n_later = flat[:, per_frame - 1 :].numel()
        copy = copy_last_frame_nll(tokens, self.p_copy, self.gpt.vocab) * n_later
        self._add(
            nll=(float(nll), flat.numel()),
            accuracy=(float(right), flat.numel()),
            nll_later=(float(later), n_later),
            copy_nll=(copy, n_later),
        )

    validation_step = test_step = lambda self, batch, batch_idx: self._score(batch)

    def _metrics(self) -> dict[str, float]:
        m = self._means()
        return {
            "perplexity": math.exp(m["nll"]),
            "token_accuracy": m["accuracy"],
            "perplexity_later_frames": math.exp(m["nll_later"]),
            "copy_last_frame_perplexity": math.exp(m["copy_nll"]),
        }

    def on_validation_epoch_end(self) -> None:
        self._validated(self._metrics())

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._metrics()


class ActionModule(_Means):
    lower_is_better = True

    def __init__(self, model: JointModel, cfg, seed: int) -> None:
        a = cfg.action
        super().__init__(seed=seed, monitor=f"min_ade@{a.samples}", max_epochs=a.epochs)
        self.model, self.a, self.dt = model, a, 1.0 / 5  # highway-env policy steps at 5 Hz
        model.gpt.requires_grad_(False)  # VaVAM trains the action expert; the video model stays as it is

    def training_step(self, batch, batch_idx):
        tokens, commands, waypoints, _ = batch
        loss = flow_matching_step(
            self.model, tokens, commands, waypoints, scale=self.a.scale, sig_min=self.a.sig_min, law=self.a.time_law
        )
        self.record_loss(loss, len(tokens))
        return loss

    def configure_optimizers(self):
        params = [p for p in self.model.expert.parameters()]
        return torch.optim.AdamW(params, lr=self.a.lr, weight_decay=0.01)

    def _score(self, batch) -> None:
        tokens, commands, waypoints, speed = batch
        truth = waypoints[:, -1]  # the last frame's future
        gen = torch.Generator().manual_seed(self.seed)  # the same noise at every evaluation: comparable epochs
        samples = sample_trajectories(
            self.model, tokens, commands, self.a.samples, scale=self.a.scale, steps=self.a.euler_steps, generator=gen
        )
        k = np.arange(1, self.a.horizon + 1) * self.a.stride * self.dt
        cv = torch.stack([speed[:, None] * torch.as_tensor(k, dtype=speed.dtype), torch.zeros(len(speed), len(k))], -1)
        n = len(tokens)
        for i in range(n):
            self._rows.append(
                {
                    "query": len(self._rows),
                    "min_ade@1": float(min_ade(samples[i : i + 1], truth[i : i + 1], 1)),
                    f"min_ade@{self.a.samples}": float(min_ade(samples[i : i + 1], truth[i : i + 1], self.a.samples)),
                    "constant_velocity_ade": float(min_ade(cv[i : i + 1, None], truth[i : i + 1], 1)),
                }
            )
        self._add(
            **{
                "min_ade@1": (float(min_ade(samples, truth, 1).sum()), n),
                f"min_ade@{self.a.samples}": (float(min_ade(samples, truth, self.a.samples).sum()), n),
                "constant_velocity_ade": (float(min_ade(cv[:, None], truth, 1).sum()), n),
            }
        )

    validation_step = test_step = lambda self, batch, batch_idx: self._score(batch)

    def on_validation_epoch_start(self) -> None:
        self._reset()
        self._rows: list[dict] = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._validated(self._means())

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._means()
        self.test_per_query = PerQueryRows(self._rows)  # one row per test window (its last frame's future)
