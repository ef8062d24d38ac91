"""LightGCN training speed against PyTorch Geometric's LightGCN, same graph, same BPR triples.

    python benchmarks/recsys_speed.py                  # ML-100k and ML-1M on the CPU
    python benchmarks/recsys_speed.py --datasets gowalla --device cuda

Per dataset: one BPR step (batch 2048: full 3-layer propagation forward and backward, Adam update)
timed as the median over ``--steps`` steps after a warm-up, for (a) PyG's ``LightGCN.get_embedding``
on the ``edge_index`` as in PyG's own LightGCN example (it renormalises the graph at every call), and
(b) rankopt's ``LightGCN`` (CSR product with a stored transpose). Both start from the same weights; the
table also gives the largest difference of their propagated embeddings, and the projected epoch time
(steps per epoch = training interactions / 2048) next to one rankopt ITEM-loss epoch (256 users per
step), which needs ~8× fewer propagations.

A second table checks that the run engine costs nothing per epoch: a full BPR and ITEM epoch of
LightGCN as the former hand-written loop ran it (the same steps, a plain ``for`` over the batches) and
through ``rankopt recsys train``'s engine (Lightning; the history's training seconds); epoch 2 of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rankopt.config import load_config
from rankopt.recsys import LightGCN
from rankopt.recsys.losses import BPRLoss, create_recsys_loss
from rankopt.recsys.run import load_data
from rankopt.recsys.training import CandidateSampler, bpr_triples, interaction_keys
from rankopt.runs import start_run

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys"
THRESHOLD = {"ml-100k": 4.0}


def timed(step, n: int, device: str) -> float:
    step()  # warm-up
    times = []
    for _ in range(n):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _config(name: str, root: Path, device: str, *overrides: str):
    threshold = [f"data.rating_threshold={THRESHOLD[name]}"] if name in THRESHOLD else []
    return load_config(
        None, [f"data.root={root / name}", f"train.device={device}", *threshold, *overrides], task="recsys"
    )


def bpr_loss(model, users, pos, neg, weight_decay: float = 1e-4) -> torch.Tensor:
    """BPR with LightGCN-PyTorch's L2 on the layer-0 embeddings, as the engine's step computes it."""
    user_emb, item_emb = model.embeddings()
    loss = BPRLoss()(user_emb[users], item_emb[pos], item_emb[neg])
    return loss + weight_decay * model.ego_penalty(users, torch.cat([pos, neg])) / len(users)


def bpr_epoch(model, train, n_items, opt, rng, keys, device, batch_size: int = 2048) -> None:
    """One epoch of BPR as the former hand-written loop ran it: all triples drawn, then mini-batches."""
    users, pos, neg = (torch.from_numpy(a).to(device) for a in bpr_triples(train, n_items, rng, keys))
    for start in range(0, len(users), batch_size):
        sl = slice(start, start + batch_size)
        loss = bpr_loss(model, users[sl], pos[sl], neg[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()


def hand_loop_epoch(cfg, data, loss: str, device: str, epochs: int = 1) -> float:
    """Seconds of the last of ``epochs`` epochs as the former hand-written loop ran them: fresh LightGCN,
    Adam, a plain loop over the steps."""
    torch.manual_seed(0)
    model = LightGCN(data.n_users, data.n_items, data.train, dim=64, layers=3).to(device)
    rng = np.random.default_rng(0)
    keys = interaction_keys(data.train, data.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3 if loss == "bpr" else 1e-2)
    loss_fn = create_recsys_loss(cfg.loss)
    sampler = CandidateSampler(data.train, data.n_items, 10, 50, keys=keys)
    for _ in range(epochs):
        t0 = time.perf_counter()
        if loss == "bpr":
            bpr_epoch(model, data.train, data.n_items, opt, rng, keys, device)
        else:
            for users, cand, levels in sampler.epoch(rng, 256):
                user_emb, item_emb = model.embeddings()
                u, c, lv = (torch.from_numpy(a).to(device) for a in (users, cand, levels))
                value = loss_fn(user_emb[u], item_emb, c, lv)
                opt.zero_grad()
                value.backward()
                opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return seconds


def engine_epoch(name: str, root: Path, loss: str, device: str) -> float:
    """Training seconds of epoch 2 of a `rankopt recsys train` run (validation only after it)."""
    cfg = _config(name, root, device, f"loss.name={loss}", "train.epochs=2", "train.eval_every=1000")
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = start_run(cfg, Path(tmp) / "run", progress=False)
    return result["history"][-1]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    print(
        "| dataset | interactions | PyG step (ms) | rankopt step (ms) | speed-up | max |Δ emb| | BPR epoch PyG (s) | "
        "BPR epoch rankopt (s) | ITEM epoch rankopt (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        cfg = _config(name, args.root, args.device)
        data = load_data(cfg)
        nu, ni = data.n_users, data.n_items
        torch.manual_seed(0)
        ours = LightGCN(nu, ni, data.train, dim=64, layers=3).to(args.device)
        theirs = PyGLightGCN(nu + ni, embedding_dim=64, num_layers=3).to(args.device)
        with torch.no_grad():
            theirs.embedding.weight.copy_(torch.cat([ours.user.weight, ours.item.weight]))
        pairs = np.unique(np.stack([data.train.user, data.train.item], 1), axis=0)
        u, i = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]) + nu
        edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])]).to(args.device)
        with torch.no_grad():
            diff = float((torch.cat(ours.embeddings()) - theirs.get_embedding(edge_index)).abs().max())

        rng = np.random.default_rng(0)
        users, pos, neg = (torch.from_numpy(a[:2048]).to(args.device) for a in bpr_triples(data.train, ni, rng))
        opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3)
        opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3)

        def step_ours():
            loss = bpr_loss(ours, users, pos, neg)
            opt_ours.zero_grad()
            loss.backward()
            opt_ours.step()

        def step_theirs():
            emb = theirs.get_embedding(edge_index)
            e0 = theirs.embedding.weight
            ue, pe, ne = emb[users], emb[nu + pos], emb[nu + neg]
            loss = torch.nn.functional.softplus((ue * ne).sum(1) - (ue * pe).sum(1)).mean()
            loss = loss + 1e-4 * 0.5 * (
                e0[users].pow(2).sum() + e0[nu + pos].pow(2).sum() + e0[nu + neg].pow(2).sum()
            ) / len(users)
            opt_theirs.zero_grad()
            loss.backward()
            opt_theirs.step()

        t_theirs, t_ours = timed(step_theirs, args.steps, args.device), timed(step_ours, args.steps, args.device)
        steps = -(-len(data.train) // 2048)
        t_item = hand_loop_epoch(cfg, data, "item-ndcg", args.device)
        print(
            f"| {name} | {len(data.train):,} | {t_theirs * 1e3:.1f} | {t_ours * 1e3:.1f} | {t_theirs / t_ours:.2f}× "
            f"| {diff:.1e} | "
            f"{t_theirs * steps:.1f} | {t_ours * steps:.1f} | {t_item:.1f} |",
            flush=True,
        )
    print("\n| dataset | loss | hand-written loop epoch (s) | run engine epoch (s) | engine / loop |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        cfg = _config(name, args.root, args.device)
        data = load_data(cfg)
        for loss in ("bpr", "item-ndcg"):
            loop = hand_loop_epoch(cfg, data, loss, args.device, epochs=2)  # epoch 2, as the engine's
            engine = engine_epoch(name, args.root, loss, args.device)
            print(f"| {name} | {loss} | {loop:.2f} | {engine:.2f} | {engine / loop:.2f} |", flush=True)


if __name__ == "__main__":
    main()
