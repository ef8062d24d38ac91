"""The recommendation task's config: what ``rankopt recsys train`` reads from a recipe, its flags and
``--set``; the machinery is :mod:`rankopt.config`.

Packaged recipes (``rankopt/recipes/recsys/``): one per dataset × model × loss of the docs' models ×
losses table, named ``<dataset>-<model>-<variant>`` (e.g. ``ml-100k-lightgcn-item-ppr``); ``data.root``
names the dataset folder (``--data-dir``). They pin that table's (untuned) settings, so they reproduce
it; a run that leaves a setting unset gets the loss's tuned value (``tuned`` in
:data:`rankopt.recsys.losses.RECSYS_LOSSES`), filled in once, by ``validate()``, and written to the run's
config.yaml.

>>> from rankopt.config import load_config
>>> cfg = load_config(None, ["data.root=interactions", "loss.name=softmax"], task="recsys")
>>> cfg.loss.score, cfg.loss.tau, cfg.optim.lr
('dot', 1.0, 0.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rankopt.config import check_choices, check_metrics, check_range, setting
from rankopt.recsys.losses import RECSYS_LOSSES
from rankopt.recsys.models import RECOMMENDERS

__all__ = [
    "RecDataConfig",
    "RecModelConfig",
    "RecLossConfig",
    "RecOptimConfig",
    "RecTrainConfig",
    "RecRunConfig",
    "SCORES",
    "tuned",
]

SCORES = ("cosine", "dot")
# the protocol the tuned values were selected under (benchmarks/recsys_tuning.py: validation every 2 epochs,
# patience 8, not before epoch 40): an unset train.min_epochs takes it with them
TUNED_PROTOCOL = {"min_epochs": 40}


def tuned(loss: str) -> dict:
    """The settings an unset field of ``loss`` takes (its registry entry's ``tuned`` metadata)."""
    return RECSYS_LOSSES.entry(loss).meta["tuned"]


@dataclass
class RecDataConfig:
    root: str | None = setting(None, help="the folder of interaction files (LightGCN, pairs, RecBole .inter, CSV)")
    rating_threshold: float | None = setting(
        None, help="keep interactions rated at least this (files with ratings only)"
    )
    valid_ratio: float = setting(0.1, help="data without a validation split: this share of each user's training items")
    split: str = setting(
        "auto",
        choices=("auto", "temporal", "random"),
        help="single interaction files: temporal (when timestamped) | random per user; auto: temporal if it can",
    )
    split_seed: int = setting(0, help="seed of every random split (random split, carved validation, inductive users)")
    protocol: str = setting(
        "transductive",
        choices=("transductive", "inductive"),
        help="inductive: held-out users served from context interactions",
    )
    valid_users: int | None = setting(None, help="validate on a fixed, seeded sample of this many users; None: all")
    held_out: float = setting(0.1, help="inductive: share of users held out")
    context: float = setting(0.5, help="inductive: share of a held-out user's interactions given as context")
    batch_users: int = setting(256, help="users per step (candidate losses)")
    batch_size: int = setting(2048, help="triples per step (BPR)")
    bpr_sampling: str = setting(
        "user",
        choices=("user", "interaction"),
        help="BPR triples: user (LightGCN-PyTorch) | interaction (a shuffled pass)",
    )


@dataclass
class RecModelConfig:
    name: str = setting("lightgcn", choices=RECOMMENDERS, help="the recommender; lightgcnpp = LightGCN++ (RecSys 2024)")
    dim: int = setting(64, help="embedding dimension")
    layers: int = setting(3, help="message-passing layers (GNNs)")
    user_repr: str = setting(
        "auto", choices=("auto", "id", "items"), help="id | items | auto (= items for the inductive protocol, else id)"
    )


@dataclass
class RecLossConfig:
    name: str = setting(
        "item-ndcg",
        choices=RECSYS_LOSSES,
        help="bpr (baseline), item-ndcg (ITEM smooth NDCG), supndcg, suprecall, softmax (sampled "
        "softmax), ccl (SimpleX's cosine contrastive loss); unset settings take its tuned values",
    )
    tau: float | None = setting(None, help="item-ndcg: sigmoid temperature; softmax: softmax temperature; None: tuned")
    score: str | None = setting(
        None, choices=SCORES, help="candidate losses: cosine or dot (raw dot products); None: tuned"
    )
    negatives: str = setting(
        "uniform",
        choices=("uniform", "ppr"),
        help="candidate losses: uniform, or PPR hard negatives mixed with uniform ones",
    )
    n_neg: int | str | None = setting(
        None, help="negatives per user and step, or 'all' (the whole catalogue); None: tuned"
    )
    n_pos: int = setting(10, help="positives sampled per user and step")
    margin: float | None = setting(None, help="ccl: negatives count above this cosine; None: tuned")
    neg_weight: float | None = setting(None, help="ccl: weight of the mean negative term; None: tuned")
    ppr_m: int | None = setting(
        None, help="PPR candidates kept per user; None: twice the PPR negatives per step (≥ 100)"
    )
    ppr_skip: int = setting(0, help="the top PPR items left out first (likely unobserved positives)")
    ppr_mix: float = setting(0.5, help="share of PPR negatives among the negatives; the rest uniform")
    ppr_sampling: str = setting(
        "band",
        choices=("band", "proportional"),
        help="band: uniform over the kept PPR items | proportional: in proportion to PPR score",
    )
    ppr_restart: float = setting(0.15, help="PPR restart probability")
    recall_k: list = setting(help="suprecall: the Recall@k terms", default_factory=lambda: [1, 5, 20])


@dataclass
class RecOptimConfig:
    lr: float | None = setting(None, help="Adam learning rate; None: the loss's tuned value")
    weight_decay: float | None = setting(
        None, help="L2 on the layer-0 embeddings of a step's users and items; None: tuned"
    )


@dataclass
class RecTrainConfig:
    epochs: int = setting(10, help="epochs to train")
    seed: int = setting(0, help="training seed")
    eval_every: int = setting(1, help="validate every this many epochs (and after the last)")
    patience: int = setting(0, help="stop after this many validations without improvement (0: never)")
    min_epochs: int | None = setting(
        None,
        help="early stopping does not end a run before this epoch (the time limit still does); None: the protocol "
        "the loss's defaults were tuned under (40)",
    )
    time_limit: float | None = setting(None, help="seconds of fitting; the epoch crossing it is the last")
    metrics: list = setting(
        help="any of recall, ndcg, p, hit, mrr, map @k", default_factory=lambda: ["recall@20", "ndcg@20"]
    )
    monitor: str = setting("ndcg@20", help="the validation metric that selects the epoch")
    refit: bool = setting(False, help="after selection, retrain on train + valid for the selected number of epochs")
    device: str = setting("cpu", help="cpu, cuda, cuda:1, ...")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe or data folder>-<timestamp>)")


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

    def _fill_tuned(self) -> None:
        """Fields left unset (None) take the loss's tuned values, in place, so config.yaml records what
        ran and a later change of defaults cannot alter a resumed run. The protocol they were tuned under
        comes with them: early stopping not before epoch 40 (an early peak of dot-score runs is followed
        by a dip, where a natural --patience would stop them)."""
        lo, o = self.loss, self.optim
        values = tuned(lo.name)
        if self.train.min_epochs is None:
            self.train.min_epochs = TUNED_PROTOCOL["min_epochs"]
        for section in (o, lo):
            for key, value in values.items():
                if key != "tau" and hasattr(section, key) and getattr(section, key) is None:
                    setattr(section, key, value)
        if lo.tau is None and lo.score in values.get("tau", {}):  # after the score: τ acts on its scale
            lo.tau = values["tau"][lo.score]

    def validate(self) -> RecRunConfig:
        """Check the whole config, after filling the tuned defaults (the one place they are resolved)."""
        check_choices(self)  # the loss name first: its tuned values are read next
        self._fill_tuned()
        check_choices(self)
        d, m, lo, o, t = self.data, self.model, self.loss, self.optim, self.train
        entry = RECSYS_LOSSES.entry(lo.name)
        if d.protocol == "inductive" and m.user_repr == "id":
            raise ValueError(
                "the inductive protocol serves users without a trained ID embedding: "
                "use model.user_repr=items (or auto)"
            )
        if entry.meta["candidate"] and lo.score is None:
            raise ValueError(f"loss.score is unset: give cosine or dot for {lo.name}")
        if entry.meta.get("cosine_only") and lo.score != "cosine":
            raise ValueError(f"loss.score={lo.score}: {lo.name} ({entry.meta['doc']}) is defined on cosine scores")
        if isinstance(lo.n_neg, str) and lo.n_neg != "all":
            raise ValueError(f"loss.n_neg={lo.n_neg!r} must be a positive number of negatives or 'all'")
        if lo.n_neg == "all" and lo.negatives == "ppr":
            raise ValueError(
                "loss.n_neg=all ranks against the whole catalogue: PPR negatives have nothing to add (use uniform)"
            )
        for key, value in (
            ("model.dim", m.dim),
            ("model.layers", m.layers),
            ("train.epochs", t.epochs),
            ("train.eval_every", t.eval_every),
            ("data.batch_users", d.batch_users),
            ("data.batch_size", d.batch_size),
            ("loss.n_pos", lo.n_pos),
            ("loss.n_neg", None if isinstance(lo.n_neg, str) else lo.n_neg),
            ("loss.ppr_m", lo.ppr_m),
        ):
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
        if lo.negatives == "ppr" and not entry.meta["candidate"]:
            raise ValueError(f"PPR negatives feed the candidate losses, not {lo.name}")
        check_metrics(t.metrics, t.monitor)
        from rankopt.metrics.names import parse_metrics

        for spec in parse_metrics(list(t.metrics), ambiguous_r=True):  # r@k: hit or recall? refused before any work
            if spec.kind not in ("recall", "ndcg@k", "p", "hit", "mrr@k", "map@k"):
                raise ValueError(
                    f"train.metrics: {spec.name} is not a recommendation metric "
                    "(recall, ndcg, p, hit, mrr, map at a cut-off, e.g. ndcg@20)"
                )
        return self
