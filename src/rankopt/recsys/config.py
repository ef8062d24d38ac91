"""The recommendation run's typed config: the same sections, recipes, ``--set`` overrides and
validation as image runs (rankopt.train.config), with the fields of a recommender.

Packaged recipes (``rankopt/recipes/recsys/``): one per dataset × model × loss of the README's
models × losses table, named ``<dataset>-<model>-<variant>`` (e.g. ``ml-100k-lightgcn-item-ppr``);
``data.root`` names the dataset folder (``--data-dir``). They pin that table's (untuned) settings, so
they reproduce it; a run that leaves a setting unset gets the tuned value (``TUNED``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rankopt.recsys.models import RECOMMENDERS
from rankopt.train.config import check_metrics, check_range

__all__ = ["RecDataConfig", "RecModelConfig", "RecLossConfig", "RecOptimConfig", "RecTrainConfig", "RecRunConfig",
           "MODELS", "LOSSES", "NEGATIVES", "SCORES", "TUNED"]

MODELS = tuple(RECOMMENDERS.names())
LOSSES = ("bpr", "item-ndcg", "supndcg", "suprecall", "softmax", "ccl")
NEGATIVES = ("uniform", "ppr")
SCORES = ("cosine", "dot")

# What a field left unset (None) becomes, per loss: the settings selected by ``benchmarks/recsys_tuning.py
# tune`` on ML-100k's validation split with LightGCN (the README's tuned table), so a first run with
# only ``--loss`` is not handicapped. ``tau`` per score type: a temperature acts on the scores' scale.
# supndcg and suprecall were not in the tuned comparison: they take ITEM's candidate settings.
TUNED = {
    "bpr": {"lr": 5e-3, "weight_decay": 1e-4},
    "item-ndcg": {"lr": 5e-3, "weight_decay": 1e-4, "score": "dot", "n_neg": 500, "tau": {"cosine": 0.1, "dot": 0.1}},
    "softmax": {"lr": 1e-2, "weight_decay": 1e-4, "score": "dot", "n_neg": 500, "tau": {"cosine": 0.1, "dot": 1.0}},
    "ccl": {"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": "all", "margin": 0.0, "neg_weight": 10.0},
    "supndcg": {"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": 500},
    "suprecall": {"lr": 1e-2, "weight_decay": 1e-4, "score": "cosine", "n_neg": 500},
}


@dataclass
class RecDataConfig:
    root: str | None = None  # the folder of interaction files (LightGCN, pairs, RecBole .inter, CSV)
    rating_threshold: float | None = None  # keep interactions rated at least this (files with ratings only)
    valid_ratio: float = 0.1  # data without a validation split: this share of each user's training items
    split: str = "auto"  # single interaction files: temporal (when timestamped) | random per user; auto: temporal if it can
    split_seed: int = 0  # every random split (random split, carved validation, inductive users): fixed across train.seed
    protocol: str = "transductive"  # or inductive: held-out users served from context interactions
    valid_users: int | None = None  # validate on a fixed, seeded sample of this many validation users (big data); None: all
    held_out: float = 0.1  # inductive: share of users held out
    context: float = 0.5  # inductive: share of a held-out user's interactions given as context
    batch_users: int = 256  # users per step (candidate losses)
    batch_size: int = 2048  # triples per step (BPR)
    bpr_sampling: str = "user"  # user (LightGCN-PyTorch) | interaction


@dataclass
class RecModelConfig:
    name: str = "lightgcn"  # mf | lightgcn | lightgcnpp (LightGCN++, RecSys 2024) | ngcf
    dim: int = 64
    layers: int = 3  # message-passing layers (GNNs)
    user_repr: str = "auto"  # id | items | auto (= items for the inductive protocol, else id)


@dataclass
class RecLossConfig:
    name: str = "item-ndcg"  # bpr | item-ndcg | supndcg | suprecall | softmax | ccl (SimpleX's cosine contrastive)
    tau: float | None = None  # item-ndcg: sigmoid temperature; softmax: softmax temperature; None: tuned, per score
    score: str | None = None  # candidate losses: cosine or dot (raw dot products); None: the loss's tuned choice
    negatives: str = "uniform"  # candidate losses: uniform | ppr
    n_neg: int | str | None = None  # negatives per user and step, or "all" (the whole catalogue); None: tuned
    n_pos: int = 10  # positives sampled per user and step
    margin: float | None = None  # ccl: negatives count above this cosine; None: tuned
    neg_weight: float | None = None  # ccl: weight of the mean negative term; None: tuned
    ppr_m: int | None = None  # PPR candidates kept per user; None: twice the PPR negatives per step (at least 100)
    ppr_skip: int = 0  # the top PPR items left out first (likely unobserved positives)
    ppr_mix: float = 0.5  # share of PPR negatives among the negatives; the rest uniform
    ppr_sampling: str = "band"  # band: uniform over the kept PPR items | proportional: in proportion to PPR score
    ppr_restart: float = 0.15
    recall_k: list = field(default_factory=lambda: [1, 5, 20])  # suprecall: the Recall@k terms


@dataclass
class RecOptimConfig:
    lr: float | None = None  # Adam; None: the loss's tuned value (TUNED)
    weight_decay: float | None = None  # L2 on the layer-0 embeddings of a step's users and items, every loss; None: tuned


@dataclass
class RecTrainConfig:
    epochs: int = 10
    seed: int = 0
    eval_every: int = 1  # validate every this many epochs (and after the last)
    patience: int = 0  # stop after this many validations without a better monitored value (0: never)
    min_epochs: int = 0  # early stopping does not end a run before this epoch (the time limit still does)
    time_limit: float | None = None  # seconds of fitting (validation included); the epoch crossing it is the last
    metrics: list = field(default_factory=lambda: ["recall@20", "ndcg@20"])  # any of recall, ndcg, p, hit, mrr, map @k
    monitor: str = "ndcg@20"
    refit: bool = False  # after selection, retrain on train + valid for the selected number of epochs
    device: str = "cpu"  # cpu, cuda, cuda:1, ...
    run_dir: str | None = None  # default: runs/<recipe or data folder>-<timestamp>


@dataclass
class RecRunConfig:
    task: ClassVar[str] = "recsys"
    recipe: str = "recsys"
    data: RecDataConfig = field(default_factory=RecDataConfig)
    model: RecModelConfig = field(default_factory=RecModelConfig)
    loss: RecLossConfig = field(default_factory=RecLossConfig)
    optim: RecOptimConfig = field(default_factory=RecOptimConfig)
    train: RecTrainConfig = field(default_factory=RecTrainConfig)

    @property
    def users(self) -> str:
        """The user representation in force."""
        r = self.model.user_repr
        return r if r != "auto" else ("items" if self.data.protocol == "inductive" else "id")

    def resolve(self) -> RecRunConfig:
        """Fill the fields left unset with the loss's tuned defaults (``TUNED``), in place, so config.yaml
        records what ran and a later change of defaults cannot alter a resumed run."""
        lo, o = self.loss, self.optim
        tuned = TUNED.get(lo.name)
        if tuned is None:
            return self
        for section, key in ((o, "lr"), (o, "weight_decay"), (lo, "score"), (lo, "n_neg"), (lo, "margin"), (lo, "neg_weight")):
            if getattr(section, key) is None and key in tuned:
                setattr(section, key, tuned[key])
        if lo.tau is None and lo.score in tuned.get("tau", {}):  # after the score: τ acts on its scale
            lo.tau = tuned["tau"][lo.score]
        return self

    def validate(self) -> RecRunConfig:
        """Check the whole config (after filling the tuned defaults: ``resolve``)."""
        self.resolve()
        d, m, lo, o, t = self.data, self.model, self.loss, self.optim, self.train
        for value, allowed, key in ((m.name, MODELS, "model.name"), (lo.name, LOSSES, "loss.name"),
                                    (lo.negatives, NEGATIVES, "loss.negatives"), (lo.ppr_sampling, ("band", "proportional"), "loss.ppr_sampling"),
                                    (d.protocol, ("transductive", "inductive"), "data.protocol"), (d.split, ("auto", "temporal", "random"), "data.split"),
                                    (m.user_repr, ("auto", "id", "items"), "model.user_repr"),
                                    (d.bpr_sampling, ("user", "interaction"), "data.bpr_sampling")):
            if value not in allowed:
                raise ValueError(f"{key}={value!r} is not one of {', '.join(allowed)}")
        if d.protocol == "inductive" and m.user_repr == "id":
            raise ValueError("the inductive protocol serves users without a trained ID embedding: "
                             "use model.user_repr=items (or auto)")
        if lo.name != "bpr" and lo.score not in SCORES:
            raise ValueError(f"loss.score={lo.score!r} is not one of {', '.join(SCORES)}")
        if lo.name == "ccl" and lo.score != "cosine":
            raise ValueError("loss.score=dot: ccl (SimpleX's cosine contrastive loss) is defined on cosine scores")
        if isinstance(lo.n_neg, str) and lo.n_neg != "all":
            raise ValueError(f"loss.n_neg={lo.n_neg!r} must be a positive number of negatives or 'all'")
        if lo.n_neg == "all" and lo.negatives == "ppr":
            raise ValueError("loss.n_neg=all ranks against the whole catalogue: PPR negatives have nothing to add (use uniform)")
        for key, value in (("model.dim", m.dim), ("model.layers", m.layers), ("train.epochs", t.epochs),
                           ("train.eval_every", t.eval_every), ("data.batch_users", d.batch_users),
                           ("data.batch_size", d.batch_size), ("loss.n_pos", lo.n_pos),
                           ("loss.n_neg", None if isinstance(lo.n_neg, str) else lo.n_neg), ("loss.ppr_m", lo.ppr_m)):
            check_range(key, value, 1)
        check_range("loss.ppr_skip", lo.ppr_skip, 0)
        check_range("train.patience", t.patience, 0)
        check_range("train.min_epochs", t.min_epochs, 0)
        check_range("data.valid_users", d.valid_users, 1)
        check_range("loss.tau", lo.tau, 0, low_open=True)
        if lo.tau is None and lo.name in ("item-ndcg", "softmax"):
            raise ValueError(f"loss.tau is unset: give the {lo.name} temperature (e.g. --set loss.tau=0.1)")
        check_range("loss.margin", lo.margin, -1, 1, low_open=True, high_open=True)
        check_range("loss.neg_weight", lo.neg_weight, 0)
        check_range("optim.lr", o.lr, 0, low_open=True)
        check_range("optim.weight_decay", o.weight_decay, 0)
        check_range("train.time_limit", t.time_limit, 0, low_open=True)
        check_range("data.valid_ratio", d.valid_ratio, 0, 1, high_open=True)
        check_range("data.held_out", d.held_out, 0, 1, low_open=True, high_open=True)
        check_range("data.context", d.context, 0, 1, low_open=True, high_open=True)
        check_range("loss.ppr_mix", lo.ppr_mix, 0, 1)
        check_range("loss.ppr_restart", lo.ppr_restart, 0, 1, low_open=True, high_open=True)
        if not lo.recall_k or any(not isinstance(k, int) or k < 1 for k in lo.recall_k):
            raise ValueError(f"loss.recall_k={lo.recall_k} must be a list of positive integers")
        if lo.negatives == "ppr" and lo.name == "bpr":
            raise ValueError("PPR negatives feed the candidate losses (item-ndcg, supndcg, suprecall, softmax), not bpr")
        check_metrics(t.metrics, t.monitor)
        from rankopt.metrics.names import parse_metrics

        for spec in parse_metrics(list(t.metrics), ambiguous_r=True):  # r@k: hit or recall? refused before any work
            if spec.kind not in ("recall", "ndcg@k", "p", "hit", "mrr@k", "map@k"):
                raise ValueError(f"train.metrics: {spec.name} is not a recommendation metric "
                                 "(recall, ndcg, p, hit, mrr, map at a cut-off, e.g. ndcg@20)")
        return self
