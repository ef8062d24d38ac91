"""``rankopt recsys train``: one recommender, one loss, one negative sampler, into a run folder.

Run folder: ``config.json``; ``checkpoint.pt`` after every epoch (model, optimiser, random states,
history and the best weights so far, written atomically: a killed run resumes where it stopped when
started again on the same folder with the same configuration); ``model.pt`` (the selected weights) and
``metrics.json`` (test metrics, timing, per-epoch history) at the end.

Model selection on the validation split (the epoch with the best validation NDCG@K), never on test;
early stopping after ``patience`` evaluations without improvement. At test time every known
interaction of a user (training *and* validation) is masked, so a validation positive is never
ranked as a negative. ``refit=True`` then retrains from scratch on train + valid for the selected
number of epochs and tests that model. metrics.json has the shape of image runs: ``test``,
``selection``, ``valid``, ``history`` (epochs from 1), plus ``run`` (timing, protocol). Data without a validation split
(Last.fm's data1/test1) gets one carved from each user's training items (``valid_ratio``); with
``valid_ratio=0`` the last epoch is kept and the output says so. Protocols: ``transductive`` (the files' users) and ``inductive``
(held-out users, served from their context interactions through the graph without retraining; needs
the ID-free user representation, ``user_repr="items"``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rankopt.atomic import atomic_torch_save, atomic_write_text
from rankopt.losses import SupNDCG, SupRecall
from rankopt.recsys.data import Interactions, RecData, inductive_split, load_directory, ratio_split
from rankopt.recsys.evaluation import evaluate_recommender
from rankopt.recsys.losses import CandidateRankLoss, ITEMLoss, SampledSoftmaxLoss
from rankopt.recsys.models import MF, NGCF, LightGCN, LightGCNpp, Recommender
from rankopt.recsys.negatives import default_cache_dir, ppr_negatives
from rankopt.recsys.training import bpr_epoch, interaction_keys, uniform_negatives

__all__ = ["RecConfig", "CandidateSampler", "build_model", "load_data", "run_recsys", "evaluate_run", "MODELS", "LOSSES"]

MODELS = ("mf", "lightgcn", "lightgcnpp", "ngcf")
LOSSES = ("bpr", "item-ndcg", "supndcg", "suprecall", "softmax")
NEGATIVES = ("uniform", "ppr")


@dataclass
class RecConfig:
    model: str = "lightgcn"
    dim: int = 64
    layers: int = 3
    user_repr: str = "auto"  # id | items | auto (= items for the inductive protocol, else id)
    loss: str = "item-ndcg"
    negatives: str = "uniform"
    n_neg: int = 50  # negatives per user and step (rank losses, softmax)
    n_pos: int = 10  # positives sampled per user and step (rank losses, softmax)
    ppr_m: int = 100  # PPR candidates kept per user
    ppr_skip: int = 0  # the top PPR items left out first (likely unobserved positives)
    ppr_mix: float = 0.5  # share of PPR negatives among the negatives; the rest uniform
    ppr_restart: float = 0.15
    tau: float = 0.1  # ITEM loss: sigmoid temperature on cosine scores
    softmax_tau: float = 0.1  # sampled softmax: temperature on cosine scores
    cosine: bool = True  # candidate losses on cosine scores (False: raw dot products, τ acts on their scale)
    epochs: int = 10
    batch_users: int = 256  # users per step (rank losses, softmax)
    batch_size: int = 2048  # triples per step (BPR)
    bpr_sampling: str = "user"  # user (LightGCN-PyTorch) | interaction
    lr: float | None = None  # None: 1e-3 for BPR (LightGCN's), 1e-2 for the candidate losses (best on ML-100k validation)
    weight_decay: float = 1e-4  # BPR's L2 on layer-0 embeddings (cosine losses are scale-free: none)
    k: int = 20
    eval_every: int = 1  # validate every this many epochs (and after the last)
    patience: int = 0  # stop after this many validations without a better validation NDCG@K (0: never)
    time_budget: float | None = None  # stop starting epochs after this many training seconds
    protocol: str = "transductive"
    held_out: float = 0.1  # inductive: share of users held out
    context: float = 0.5  # inductive: share of a held-out user's interactions given as context
    rating_threshold: float | None = None  # keep interactions rated at least this (explicit → implicit)
    valid_ratio: float = 0.1  # data without a validation split: this share of each user's training items
    refit: bool = False  # after selection, retrain on train + valid for the selected number of epochs
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for value, allowed, name in ((self.model, MODELS, "model"), (self.loss, LOSSES, "loss"),
                                     (self.negatives, NEGATIVES, "negatives"),
                                     (self.protocol, ("transductive", "inductive"), "protocol"),
                                     (self.user_repr, ("auto", "id", "items"), "user_repr"),
                                     (self.bpr_sampling, ("user", "interaction"), "bpr_sampling")):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        if self.protocol == "inductive" and self.user_repr == "id":
            raise ValueError("the inductive protocol serves users without a trained ID embedding: use user_repr 'items' (or 'auto')")
        for name in ("dim", "epochs", "batch_users", "batch_size", "n_pos", "k", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.negatives == "ppr" and self.loss == "bpr":
            raise ValueError("PPR negatives feed the candidate losses (item-ndcg, supndcg, suprecall, softmax), not BPR")
        if not 0 <= self.valid_ratio < 1:
            raise ValueError(f"valid_ratio={self.valid_ratio} must be in [0, 1)")
        if not 0 <= self.ppr_mix <= 1:
            raise ValueError(f"ppr_mix={self.ppr_mix} must be in [0, 1]")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.loss == "bpr" else 1e-2)

    @property
    def users(self) -> str:
        """The user representation in force."""
        return self.user_repr if self.user_repr != "auto" else ("items" if self.protocol == "inductive" else "id")


def build_model(cfg: RecConfig, n_users: int, n_items: int, graph: Interactions) -> Recommender:
    common = dict(dim=cfg.dim, user_repr=cfg.users)
    if cfg.model == "mf":
        return MF(n_users, n_items, graph, **common)
    cls = {"lightgcn": LightGCN, "lightgcnpp": LightGCNpp, "ngcf": NGCF}[cfg.model]
    return cls(n_users, n_items, graph, layers=cfg.layers, **common)


def load_data(data_dir: str | Path, cfg: RecConfig) -> RecData:
    data = load_directory(data_dir, seed=cfg.seed, rating_threshold=cfg.rating_threshold)
    if data.valid is None and cfg.valid_ratio > 0:  # select on a validation split carved from train, never on test
        train, valid, _ = ratio_split(data.train, (1 - cfg.valid_ratio, cfg.valid_ratio, 0.0), seed=cfg.seed)
        data = dataclasses.replace(data, train=train, valid=valid)
    if cfg.protocol == "inductive":
        data = inductive_split(data, held_out=cfg.held_out, context=cfg.context, seed=cfg.seed)
    return data


class CandidateSampler:
    """Per epoch, each training user once, in blocks: up to ``n_pos`` of its positives (sampled without
    replacement) and ``n_neg`` negatives (a ``ppr_mix`` share from its PPR top-M, the rest uniform
    non-interacted items). Yields (users (B,), candidates (B, n_pos + n_neg), levels (B, ·)) with level 1
    for positives, 0 for negatives, −1 for padding (users with fewer than n_pos positives)."""

    def __init__(self, train: Interactions, n_items: int, n_pos: int, n_neg: int, ppr: np.ndarray | None = None,
                 ppr_mix: float = 0.5, keys: np.ndarray | None = None) -> None:
        self.pairs = np.unique(np.stack([train.user, train.item], axis=1).astype(np.int64), axis=0)  # sorted by user
        self.active, self.starts, self.counts = np.unique(self.pairs[:, 0], return_index=True, return_counts=True)
        self.keys = interaction_keys(train, n_items) if keys is None else keys
        self.n_items, self.n_pos, self.n_neg, self.ppr = n_items, n_pos, n_neg, ppr
        self.n_ppr = int(round(n_neg * ppr_mix)) if ppr is not None else 0
        if ppr is not None and self.n_ppr > ppr.shape[1]:
            raise ValueError(f"{self.n_ppr} PPR negatives per step but only {ppr.shape[1]} PPR candidates per user (raise ppr_m)")

    def epoch(self, rng: np.random.Generator, batch_users: int):
        order = np.lexsort((rng.random(len(self.pairs)), self.pairs[:, 0]))  # by user, random within a user
        rank = np.arange(len(self.pairs)) - np.repeat(self.starts, self.counts)
        keep = rank < self.n_pos
        positives = np.full((len(self.active), self.n_pos), -1, dtype=np.int64)
        positives[np.repeat(np.arange(len(self.active)), self.counts)[keep], rank[keep]] = self.pairs[order[keep], 1]
        perm = rng.permutation(len(self.active))
        for start in range(0, len(perm), batch_users):
            rows = perm[start : start + batch_users]
            users, pos = self.active[rows], positives[rows]
            negatives = [uniform_negatives(self.keys, self.n_items, np.repeat(users, self.n_neg - self.n_ppr), rng).reshape(len(users), -1)]
            if self.n_ppr:
                pool = self.ppr[users]
                pick = np.argsort(rng.random(pool.shape), axis=1)[:, : self.n_ppr]  # without replacement
                negatives.insert(0, np.take_along_axis(pool, pick, axis=1))
            neg = np.concatenate(negatives, axis=1)
            levels = np.concatenate([np.where(pos >= 0, 1, -1), np.zeros(neg.shape, dtype=np.int64)], axis=1)
            yield users, np.concatenate([np.maximum(pos, 0), neg], axis=1), levels


def _candidate_loss(cfg: RecConfig) -> torch.nn.Module:
    if cfg.loss == "item-ndcg":
        return ITEMLoss(tau=cfg.tau, normalize=cfg.cosine)
    if cfg.loss == "softmax":
        return SampledSoftmaxLoss(tau=cfg.softmax_tau, normalize=cfg.cosine)
    return CandidateRankLoss(SupNDCG() if cfg.loss == "supndcg" else SupRecall(k=(1, 5, cfg.k)), normalize=cfg.cosine)


def _candidate_epoch(model: Recommender, loss_fn, sampler: CandidateSampler, cfg: RecConfig, opt, rng) -> float:
    device = model.item.weight.device
    total, steps = 0.0, 0
    for users, cand, levels in sampler.epoch(rng, cfg.batch_users):
        user_emb, item_emb = model.embeddings()
        u, c, lv = (torch.from_numpy(a).to(device) for a in (users, cand, levels))
        loss = loss_fn(user_emb[u], item_emb, c, lv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(1, steps)


class _Trainer:
    """One training epoch of a recommender on a set of interactions, BPR or a candidate loss."""

    def __init__(self, cfg: RecConfig, data: RecData, train: Interactions) -> None:
        self.cfg, self.train, self.n_items = cfg, train, data.n_items
        self.keys = interaction_keys(train, data.n_items)
        if cfg.loss != "bpr":
            ppr = _ppr(cfg, dataclasses.replace(data, train=train)) if cfg.negatives == "ppr" else None
            self.sampler = CandidateSampler(train, data.n_items, cfg.n_pos, cfg.n_neg, ppr, cfg.ppr_mix, self.keys)
            self.loss_fn = _candidate_loss(cfg)

    def epoch(self, model: Recommender, opt, rng: np.random.Generator) -> float:
        model.train()
        if self.cfg.loss == "bpr":
            epoch_rng = np.random.default_rng(int(rng.integers(2**31)))  # a child stream per epoch
            return bpr_epoch(model, self.train, self.n_items, opt, epoch_rng, self.keys, self.cfg.batch_size,
                             self.cfg.weight_decay, self.cfg.bpr_sampling)
        return _candidate_epoch(model, self.loss_fn, self.sampler, self.cfg, opt, rng)


def _known(data: RecData) -> Interactions:
    """Every interaction a user is known to have before test: training and validation."""
    parts = [data.train] + ([data.valid] if data.valid is not None and len(data.valid) else [])
    return Interactions.concat(parts) if len(parts) > 1 else data.train


def _test_metrics(model: Recommender, data: RecData, cfg: RecConfig) -> dict:
    """Test Recall/NDCG@K with every known item masked (train + valid); inductive: the held-out users'
    context edges join the graph (and are masked)."""
    model.eval()
    with torch.no_grad():
        if cfg.protocol == "transductive":
            return evaluate_recommender(*model.embeddings(), data.test, _known(data), (cfg.k,))
        model.set_graph(Interactions.concat([data.train, data.context]))
        try:
            return evaluate_recommender(*model.embeddings(), data.test, data.context, (cfg.k,))
        finally:
            model.set_graph(data.train)


def _ppr(cfg: RecConfig, data: RecData) -> np.ndarray:
    counts = np.bincount(np.unique(np.stack([data.train.user, data.train.item], 1), axis=0)[:, 0])
    m = min(cfg.ppr_m, data.n_items - int(counts.max()) - cfg.ppr_skip)
    return ppr_negatives(data.train, data.n_users, data.n_items, m=m, skip=cfg.ppr_skip, restart=cfg.ppr_restart, device=cfg.device,
                         cache_dir=default_cache_dir())


def run_recsys(data_dir: str | Path, cfg: RecConfig, run_dir: str | Path | None = None,
               progress: Callable[[dict, RecConfig], None] | None = None) -> tuple[dict, Path]:
    """Train (resuming from the run folder's checkpoint if there is one), select on validation, evaluate
    on test; returns (test metrics, run folder). ``progress(entry, cfg)`` is called after every epoch."""
    data = load_data(data_dir, cfg)
    run_dir = Path(run_dir or f"runs/recsys-{Path(data_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    saved = {"data_dir": str(data_dir), **dataclasses.asdict(cfg)}
    config_file, ckpt_file = run_dir / "config.json", run_dir / "checkpoint.pt"
    if config_file.is_file() and json.loads(config_file.read_text()) != saved:
        raise ValueError(f"{run_dir} holds a run with another configuration: choose another --run-dir")
    atomic_write_text(config_file, json.dumps(saved, indent=2))

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg, data.n_users, data.n_items, data.train).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    state = {"epoch": 0, "history": [], "best": None, "best_score": -1.0, "best_epoch": 0, "train_seconds": 0.0,
             "seconds_to_best": 0.0, "stale": 0, "best_valid": {}}
    if ckpt_file.is_file():
        ckpt = torch.load(ckpt_file, map_location=cfg.device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])

    trainer = _Trainer(cfg, data, data.train)
    has_valid = data.valid is not None and len(data.valid) > 0
    metric = f"ndcg@{cfg.k}"
    while state["epoch"] < cfg.epochs:
        if cfg.patience and state["stale"] >= cfg.patience:
            break
        if cfg.time_budget is not None and state["train_seconds"] >= cfg.time_budget:
            break
        epoch = state["epoch"] + 1  # epochs are counted from 1
        t0 = time.perf_counter()
        loss = trainer.epoch(model, opt, rng)
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        entry = {"epoch": epoch, "loss": loss, "seconds": seconds}
        out_of_time = cfg.time_budget is not None and state["train_seconds"] >= cfg.time_budget
        if has_valid and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time):
            model.eval()
            with torch.no_grad():
                users, items = model.embeddings()
                valid = evaluate_recommender(users, items, data.valid, data.train, (cfg.k,))
            entry.update({f"valid/{k}": v for k, v in valid.items()})
            if valid[metric] > state["best_score"]:
                state.update(best_score=valid[metric], best_epoch=epoch, stale=0, best_valid=valid,
                             seconds_to_best=state["train_seconds"],
                             best={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            else:
                state["stale"] += 1
        state["history"].append(entry)
        state["epoch"] = epoch
        atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                           "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, ckpt_file)
        if progress is not None:
            progress(entry, cfg)

    history = state["history"]
    selected = state["best"] is not None
    if selected:
        model.load_state_dict(state["best"])
    epoch = state["best_epoch"] if selected else len(history)
    refit = None
    if cfg.refit and has_valid:
        model, refit = _refit(cfg, data, epoch), {"on": "train+valid", "epochs": epoch}
    out = {
        "test": _test_metrics(model, data, cfg),
        "selection": {"split": "valid" if selected else None, "metric": metric,
                      "value": state["best_score"] if selected else None, "epoch": epoch, "epochs_run": len(history)},
        "valid": dict(state["best_valid"]) if selected else {},
        "history": history,
        "run": {"protocol": cfg.protocol, "refit": refit, "excluded_users": data.excluded_users,
                "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else 0.0,
                "seconds_to_best": state["seconds_to_best"] if selected else state["train_seconds"]},
        "run_dir": str(run_dir),
    }
    atomic_torch_save(model.state_dict(), run_dir / "model.pt")
    atomic_write_text(run_dir / "metrics.json", json.dumps(out, indent=2))
    return out, run_dir


def _refit(cfg: RecConfig, data: RecData, epochs: int) -> Recommender:
    """A fresh model trained on train + valid (graph included) for ``epochs`` epochs, same seed."""
    known = _known(data)
    both = dataclasses.replace(data, train=known, valid=None)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg, data.n_users, data.n_items, known).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    trainer = _Trainer(cfg, both, known)
    for _ in range(epochs):
        trainer.epoch(model, opt, rng)
    return model


def evaluate_run(run_dir: str | Path, device: str | None = None) -> dict:
    """Re-evaluate a finished run on its test split from config.json and model.pt."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json and model.pt: not a finished recsys run")
    saved = json.loads((run_dir / "config.json").read_text())
    data_dir = saved.pop("data_dir")
    cfg = RecConfig(**{**saved, "device": device or saved.get("device", "cpu")})
    data = load_data(data_dir, cfg)
    graph = _known(data) if cfg.refit and data.valid is not None else data.train
    model = build_model(cfg, data.n_users, data.n_items, graph).to(cfg.device)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location=cfg.device, weights_only=True))
    return _test_metrics(model, data, cfg)
