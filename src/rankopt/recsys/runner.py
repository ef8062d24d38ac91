"""``rankopt recsys train``: one recommender, one loss, one negative sampler, into a run folder.

Model selection on the validation split (the epoch with the best validation NDCG@K), never on test;
when the data has no validation split, the last epoch is kept and the output says so. Protocols:
``transductive`` (the files' users) and ``inductive`` (held-out users, served from their context
interactions through ``user_from_items`` without a trained user embedding).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rankopt.losses import SupNDCG, SupRecall
from rankopt.recsys.data import RecData, inductive_split, load_directory
from rankopt.recsys.evaluation import evaluate_recommender
from rankopt.recsys.graph import normalized_adjacency
from rankopt.recsys.losses import ITEMLoss, rank_loss_on_candidates
from rankopt.recsys.models import MF, NGCF, LightGCN
from rankopt.recsys.negatives import ppr_negatives
from rankopt.recsys.training import _interaction_keys, train_bpr, uniform_negatives

__all__ = ["RecConfig", "run_recsys", "evaluate_run"]

MODELS, LOSSES, NEGATIVES = ("mf", "lightgcn", "ngcf"), ("bpr", "item-ndcg", "supndcg", "suprecall"), ("uniform", "ppr")


@dataclass
class RecConfig:
    model: str = "lightgcn"
    dim: int = 64
    layers: int = 3
    loss: str = "item-ndcg"
    negatives: str = "uniform"
    n_neg: int = 50  # negatives per user and step (rank losses)
    n_pos: int = 10  # positives per user and step (rank losses)
    ppr_m: int = 100  # PPR candidates kept per user
    ppr_mix: float = 0.5  # share of PPR negatives among the negatives; the rest uniform
    tau: float = 0.1
    epochs: int = 10
    batch_users: int = 256
    batch_size: int = 2048  # BPR triples per step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    k: int = 20
    protocol: str = "transductive"
    rating_threshold: float | None = None  # keep interactions rated at least this (explicit → implicit)
    seed: int = 0

    def __post_init__(self) -> None:
        for value, allowed, name in ((self.model, MODELS, "model"), (self.loss, LOSSES, "loss"),
                                     (self.negatives, NEGATIVES, "negatives"),
                                     (self.protocol, ("transductive", "inductive"), "protocol")):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def _build(cfg: RecConfig, data: RecData):
    if cfg.model == "mf":
        return MF(data.n_users, data.n_items, cfg.dim)
    if cfg.model == "ngcf":
        return NGCF(data.n_users, data.n_items, normalized_adjacency(data.train, data.n_users, data.n_items), cfg.dim, cfg.layers)
    return LightGCN(data.n_users, data.n_items, normalized_adjacency(data.train, data.n_users, data.n_items), cfg.dim, cfg.layers)


def _rank_loss_epoch(model, cfg: RecConfig, data: RecData, opt, rng, keys, ppr) -> float:
    loss_fn = {"item-ndcg": ITEMLoss(tau=cfg.tau), "supndcg": SupNDCG(), "suprecall": SupRecall(k=(1, 5, cfg.k))}[cfg.loss]
    by_user = data.train.by_user()
    users = rng.permutation(np.array(sorted(by_user)))
    total, steps = 0.0, 0
    for start in range(0, len(users), cfg.batch_users):
        block = users[start : start + cfg.batch_users]
        cand = np.zeros((len(block), cfg.n_pos + cfg.n_neg), dtype=np.int64)
        levels = np.full(cand.shape, -1, dtype=np.int64)
        for r, u in enumerate(block.tolist()):
            pos = data.train.item[by_user[u]]
            pos = rng.choice(pos, size=min(cfg.n_pos, len(pos)), replace=False)
            cand[r, : len(pos)], levels[r, : len(pos)] = pos, 1
        n_ppr = int(round(cfg.n_neg * cfg.ppr_mix)) if ppr is not None else 0
        neg = uniform_negatives(keys, data.n_items, np.repeat(block, cfg.n_neg - n_ppr), rng).reshape(len(block), -1)
        if n_ppr:
            picks = np.stack([rng.choice(ppr[u], size=n_ppr, replace=False) for u in block.tolist()])
            neg = np.concatenate([picks, neg], axis=1)
        cand[:, cfg.n_pos :], levels[:, cfg.n_pos :] = neg, 0
        user_emb, item_emb = model.embeddings()
        u_t, c_t, l_t = torch.from_numpy(block), torch.from_numpy(cand), torch.from_numpy(levels)
        if isinstance(loss_fn, ITEMLoss):
            loss = loss_fn(user_emb[u_t], item_emb, c_t, l_t)
        else:
            loss = rank_loss_on_candidates(loss_fn, user_emb[u_t], item_emb, c_t, l_t)
        reg = model.user.weight[u_t].pow(2).sum() / len(block)
        loss = loss + cfg.weight_decay * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, steps = total + float(loss), steps + 1
    return total / max(1, steps)


def _embeddings_for(model, data: RecData, inductive: bool):
    with torch.no_grad():
        users, items = model.embeddings()
        if inductive:  # held-out users: no trained embedding, built from their context items
            ctx = data.context.by_user()
            idx = sorted(ctx)
            built = model.user_from_items([torch.from_numpy(data.context.item[ctx[u]]) for u in idx])
            users = users.clone()
            users[torch.tensor(idx)] = built
    return users, items


def run_recsys(data_dir: str | Path, cfg: RecConfig, run_dir: str | Path | None = None, log=print) -> tuple[dict, Path]:
    """Train, select on validation, evaluate on test; write config.json, metrics.json and model.pt."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = load_directory(data_dir, seed=cfg.seed, rating_threshold=cfg.rating_threshold)
    inductive = cfg.protocol == "inductive"
    if inductive:
        data = inductive_split(data, seed=cfg.seed)
    run_dir = Path(run_dir or f"runs/recsys-{Path(data_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"data_dir": str(data_dir), **dataclasses.asdict(cfg)}, indent=2))
    model = _build(cfg, data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    keys = _interaction_keys(data.train, data.n_items)
    ppr = None
    if cfg.negatives == "ppr":
        most = max(len(np.unique(data.train.item[idx])) for idx in data.train.by_user().values())
        ppr = ppr_negatives(data.train, data.n_users, data.n_items, m=min(cfg.ppr_m, data.n_items - most))
    best, best_score, history = None, -1.0, []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        if cfg.loss == "bpr":
            loss = train_bpr(model, data.train, data.n_items, epochs=1, batch_size=cfg.batch_size, lr=cfg.lr,
                             weight_decay=cfg.weight_decay, seed=cfg.seed + epoch, optimizer=opt)[0]
        else:
            loss = _rank_loss_epoch(model, cfg, data, opt, rng, keys, ppr)
        seconds = time.perf_counter() - t0
        entry = {"epoch": epoch, "loss": loss, "seconds": seconds}
        if data.valid is not None and len(data.valid):
            users, items = _embeddings_for(model, data, False)
            entry.update({f"valid/{k}": v for k, v in evaluate_recommender(users, items, data.valid, data.train, (cfg.k,)).items()})
            if entry[f"valid/ndcg@{cfg.k}"] > best_score:
                best_score, best = entry[f"valid/ndcg@{cfg.k}"], copy.deepcopy(model.state_dict())
        history.append(entry)
        log(json.dumps(entry))
    if best is not None:
        model.load_state_dict(best)
    users, items = _embeddings_for(model, data, inductive)
    masked = data.context if inductive else data.train
    metrics = evaluate_recommender(users, items, data.test, masked, (cfg.k,))
    metrics.update(protocol=cfg.protocol, selected_on="valid" if best is not None else "last epoch (no validation split)",
                   excluded_users=data.excluded_users, seconds_per_epoch=float(np.mean([h["seconds"] for h in history])))
    tmp = run_dir / ".model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(run_dir / "model.pt")
    (run_dir / "metrics.json").write_text(json.dumps({"test": metrics, "history": history}, indent=2))
    return metrics, run_dir


def evaluate_run(run_dir: str | Path) -> dict:
    """Re-evaluate a finished run on its test split from config.json and model.pt."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json and model.pt: not a finished recsys run")
    saved = json.loads((run_dir / "config.json").read_text())
    data_dir = saved.pop("data_dir")
    cfg = RecConfig(**saved)
    data = load_directory(data_dir, seed=cfg.seed, rating_threshold=cfg.rating_threshold)
    if cfg.protocol == "inductive":
        data = inductive_split(data, seed=cfg.seed)
    model = _build(cfg, data)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    users, items = _embeddings_for(model, data, cfg.protocol == "inductive")
    return evaluate_recommender(users, items, data.test, data.context if cfg.protocol == "inductive" else data.train, (cfg.k,))
