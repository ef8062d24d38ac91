"""Recommendation on the run engine: the LightningModule of a recommender and the data module that
draws each epoch's training steps. ``rankopt.train.engine.fit`` trains, selects, checkpoints, stops
early and tests them exactly as it does image retrieval.

Evaluation ranks the whole catalogue for every user at the end of a validation / test epoch (one
nominal batch), LightGCN conventions: at validation the training items are masked; at test every
known item (training *and* validation), so a validation positive is never ranked as a negative;
inductive: the held-out users' context edges join the graph to serve them, and are masked.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import pytorch as pl
from torch.utils.data import DataLoader, IterableDataset

from rankopt.progress import progress_bar
from rankopt.recsys.config import RecRunConfig
from rankopt.recsys.data import Interactions, RecData
from rankopt.recsys.evaluation import PerUser, evaluate_recommender
from rankopt.recsys.losses import RECSYS_LOSSES, create_recsys_loss
from rankopt.recsys.models import Recommender
from rankopt.recsys.negatives import default_cache_dir, ppr_negatives
from rankopt.recsys.training import CandidateSampler, bpr_triples, interaction_keys
from rankopt.train.module import RunModule

__all__ = ["RecommenderModule", "RecommendationData", "known_items"]


def known_items(data: RecData) -> Interactions:
    """Every interaction a user is known to have before test: training and validation."""
    parts = [data.train] + ([data.valid] if data.valid is not None and len(data.valid) else [])
    return Interactions.concat(parts) if len(parts) > 1 else data.train


class _EpochSteps(IterableDataset):
    """Each iteration: one epoch of training steps, drawn when iterated; its length is the step count."""

    def __init__(self, draw, n_steps: int) -> None:
        self.draw, self.n_steps = draw, n_steps

    def __len__(self) -> int:
        return self.n_steps

    def __iter__(self):
        return iter(self.draw())


def _once() -> DataLoader:
    """One nominal batch: the evaluation itself ranks the whole catalogue at the epoch's end."""
    return DataLoader([0], batch_size=None)


class RecommendationData(pl.LightningDataModule):
    """Training steps of a recommender on ``train``: BPR triples (``data.batch_size`` per step) or, for
    the candidate losses, blocks of ``data.batch_users`` users with sampled positives and negatives.
    One numpy generator (seeded by ``train.seed``) draws every epoch; its state is saved in checkpoints,
    so a resumed run draws what the uninterrupted run would have."""

    def __init__(self, cfg: RecRunConfig, data: RecData, train: Interactions, validate: bool = True) -> None:
        super().__init__()
        self.cfg, self.train, self.n_items = cfg, train, data.n_items
        self.validate = validate and data.valid is not None and len(data.valid) > 0
        self.rng = np.random.default_rng(cfg.train.seed)
        self.keys = interaction_keys(train, data.n_items)
        self.sampler = None
        if RECSYS_LOSSES.entry(cfg.loss.name).meta["candidate"]:
            ppr, ppr_scores = self._ppr(data) if cfg.loss.negatives == "ppr" else (None, None)
            self.sampler = CandidateSampler(
                train,
                data.n_items,
                cfg.loss.n_pos,
                cfg.loss.n_neg,
                ppr,
                cfg.loss.ppr_mix,
                self.keys,
                ppr_scores if cfg.loss.ppr_sampling == "proportional" else None,
            )

    def _ppr(self, data: RecData) -> tuple[np.ndarray, np.ndarray]:
        lo = self.cfg.loss
        counts = np.bincount(np.unique(np.stack([self.train.user, self.train.item], 1), axis=0)[:, 0])
        n_ppr = int(round(lo.n_neg * lo.ppr_mix))
        wanted = lo.ppr_m if lo.ppr_m is not None else max(100, 2 * n_ppr)
        left = data.n_items - int(counts.max()) - lo.ppr_skip
        m = min(wanted, left)
        if m < 1:
            raise ValueError(
                f"loss.ppr_skip={lo.ppr_skip}: a user has interacted with so many of the {data.n_items} "
                "items that no PPR candidate is left"
            )
        if n_ppr > m and wanted > left:
            raise ValueError(
                f"loss.n_neg={lo.n_neg} × loss.ppr_mix={lo.ppr_mix} = {n_ppr} PPR negatives per step, but a user "
                f"has only {left} items it has not interacted with (after loss.ppr_skip): lower loss.n_neg or "
                "loss.ppr_mix"
            )
        return ppr_negatives(
            self.train,
            data.n_users,
            data.n_items,
            m=m,
            skip=lo.ppr_skip,
            restart=lo.ppr_restart,
            device=self.cfg.train.device,
            cache_dir=default_cache_dir(),
            with_scores=True,
        )

    @property
    def selection_split(self) -> str | None:
        return "valid" if self.validate else None

    def n_steps(self) -> int:
        if self.sampler is None:
            return -(-len(self.train) // self.cfg.data.batch_size)
        return self.sampler.steps(self.cfg.data.batch_users)

    def _draw(self):
        if self.sampler is not None:
            yield from self.sampler.epoch(self.rng, self.cfg.data.batch_users)
            return
        epoch_rng = np.random.default_rng(int(self.rng.integers(2**31)))  # a child stream per epoch
        users, pos, neg = bpr_triples(self.train, self.n_items, epoch_rng, self.keys, self.cfg.data.bpr_sampling)
        size = self.cfg.data.batch_size
        for start in range(0, len(users), size):
            yield users[start : start + size], pos[start : start + size], neg[start : start + size]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_EpochSteps(self._draw, self.n_steps()), batch_size=None)

    def val_dataloader(self):
        return _once() if self.validate else []

    def test_dataloader(self) -> DataLoader:
        return _once()

    def state_dict(self) -> dict:
        return {"numpy_rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["numpy_rng"]


class RecommenderModule(RunModule):
    """A recommender trained with BPR or a candidate loss (Adam); validation and test rank the whole
    catalogue through rankopt.metrics (``train.metrics``)."""

    def __init__(self, model: Recommender, cfg: RecRunConfig, data: RecData) -> None:
        super().__init__(seed=cfg.train.seed, monitor=cfg.train.monitor, max_epochs=cfg.train.epochs)
        self.model, self.cfg, self.data = model, cfg, data
        self.metric_names = list(cfg.train.metrics)
        self.candidate = RECSYS_LOSSES.entry(cfg.loss.name).meta["candidate"]  # else: (user, pos, neg) triples
        self.loss_fn = create_recsys_loss(cfg.loss)
        self.lr, self.weight_decay = cfg.optim.lr, cfg.optim.weight_decay
        self.valid_users = None  # all validation users, or a fixed sample (data.valid_users): the same one every epoch
        if data.valid is not None and cfg.data.valid_users is not None:
            users = np.unique(data.valid.user)
            if cfg.data.valid_users < len(users):
                rng = np.random.default_rng(cfg.data.split_seed)
                self.valid_users = np.sort(rng.choice(users, cfg.data.valid_users, replace=False))

    def training_step(self, batch, batch_idx):
        if not self.candidate:
            users, pos, neg = batch
            user_emb, item_emb = self.model.embeddings()
            loss = self.loss_fn(user_emb[users], item_emb[pos], item_emb[neg])
            loss = loss + self.weight_decay * self.model.ego_penalty(users, torch.cat([pos, neg])) / len(users)
            self.record_loss(loss, len(users))  # the epoch's mean over triples
            return loss
        users, candidates, levels = batch
        user_emb, item_emb = self.model.embeddings()
        loss = self.loss_fn(user_emb[users], item_emb, candidates, levels)
        if self.weight_decay:  # the same L2 on layer-0 embeddings as BPR's, over the step's users and items
            if candidates is not None:
                penalty = self.model.ego_penalty(users, candidates[levels >= 0])
            else:  # the whole catalogue: each item as often as it is a candidate, without gathering B × items rows
                penalty = self.model.ego_penalty(users, item_counts=(levels >= 0).sum(dim=0))
            loss = loss + self.weight_decay * penalty / len(users)
        self.record_loss(loss)
        return loss

    def validation_step(self, batch, batch_idx) -> None:
        pass  # the whole catalogue is ranked once, at the epoch's end

    def test_step(self, batch, batch_idx) -> None:
        pass

    def _bar(self, label: str):
        shown = self._trainer is not None and self.trainer.progress_bar_callback is not None
        return progress_bar(label, enabled=None if shown else False)  # None: on a terminal

    def on_validation_epoch_end(self) -> None:
        with self._bar("ranking valid") as bar:
            self.valid_metrics = evaluate_recommender(
                self.model.embeddings(),
                self.data.valid,
                self.data.train,
                self.metric_names,
                users=self.valid_users,
                progress=bar,
            )
        entry = self._entry()
        for k, v in self.valid_metrics.items():
            entry[f"valid/{k}"] = v
            if not k.startswith("n_"):
                self.log(f"valid/{k}", float(v), prog_bar=k == self.monitor)

    def evaluate_test(self, progress=None) -> tuple[dict, PerUser]:
        """Test metrics (and per-user values) of the current weights."""
        data = self.data
        inductive = self.cfg.data.protocol == "inductive"
        if inductive:  # held-out users are served from their context edges, added to the graph for the test
            self.model.set_graph(Interactions.concat([data.train, data.context]))
        try:
            masked = data.context if inductive else known_items(data)
            metrics, per_user = evaluate_recommender(
                self.model.embeddings(), data.test, masked, self.metric_names, per_user=True, progress=progress
            )
        finally:
            if inductive:
                self.model.set_graph(data.train)
        return metrics, PerUser(per_user)

    def on_test_epoch_end(self) -> None:
        with self._bar("ranking test") as bar:
            self.test_metrics, self.test_per_query = self.evaluate_test(bar)
        for k, v in self.test_metrics.items():
            if not k.startswith("n_"):
                self.log(f"test/{k}", float(v))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)
