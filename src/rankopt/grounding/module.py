"""LoRA training of the box-picking language model through the run engine (``rankopt.train.engine.fit``).

Only the LoRA weights are the module's parameters (the checkpoint holds them, a few MB); the language
model itself stays outside the module, frozen, moved and switched between train and eval with it.
Validation: p@1 of the index-logit argmax (one forward per prompt). Test: LLM-wrapper's protocol —
greedy decoding, the first integer of the answer, P@1 = IoU(chosen box, ground truth) > 0.5 — for the
tuned model and, with the adapters off, the same model zero-shot, on the same test prompts; beside
them the ranking of the candidates by index logits (MRR, hit@k through rankopt.metrics) and its
argmax's P@1 (``p@1_index``: the choice the rank losses train, whose free-form answer is untrained).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rankopt.data.samplers import ShuffleBatchSampler
from rankopt.grounding.config import ORDERS
from rankopt.grounding.data import Sample
from rankopt.grounding.language_model import (
    PromptEncoder,
    answer_loss,
    answer_positions,
    index_logits,
    logits_at,
    rank_loss,
)
from rankopt.grounding.prompt import parse_answer, permuted_label
from rankopt.grounding.scenes import box_iou
from rankopt.metrics import rank_metrics
from rankopt.runs import PerQueryRows
from rankopt.train.module import RunModule

__all__ = ["GroundingModule", "GroundingData", "Prompts", "RANK_METRICS", "augmented_orders"]

RANK_METRICS = ("mrr", "hit@1", "hit@3")


def augmented_orders(n_candidates: int, rng: np.random.Generator) -> list[np.ndarray | None]:
    """LLM-wrapper's 'aug' fine-tuning data for one sample: the proposer's order (None) and
    min(n − 1, 4) random orders (theirs: the fixed seeds [2], [2, 6], [0, 2, 7], [2, 4, 6, 7]), each
    its own prompt."""
    return [None] + [rng.permutation(n_candidates) for _ in range(min(n_candidates - 1, 4))]


class Prompts(Dataset):
    """Prompt items of one split: (token ids, n candidates, label, sample id), the boxes listed in the
    ``order`` mode of ``prompt.order``: ``none``, the proposer's order; ``aug``, each sample also in the
    random orders of :func:`augmented_orders` drawn from (seed, sample), so more items than samples;
    ``shuffle``, one order per (seed, epoch, sample), drawn when the batch sampler passes the epoch."""

    def __init__(self, samples: list[Sample], encoder: PromptEncoder, fmt, seed: int, order: str) -> None:
        self.samples, self.encoder, self.fmt, self.seed = samples, encoder, fmt, seed
        if order == "aug":
            keys = [
                (i, o)
                for i, s in enumerate(samples)
                for o in augmented_orders(s.n_candidates, np.random.default_rng([seed, i]))
            ]
        elif order in ("none", "shuffle"):
            keys = [(i, None) for i in range(len(samples))]
        else:
            raise ValueError(f"unknown box order {order!r}; known: {', '.join(ORDERS)}")
        self._fixed = None if order == "shuffle" else [self._encode(i, o) for i, o in keys]

    def __len__(self) -> int:
        return len(self.samples) if self._fixed is None else len(self._fixed)

    def _encode(self, i: int, order) -> tuple[list[int], int, int, int]:
        s = self.samples[i]
        label = s.label if order is None else permuted_label(order, s.label)
        text = s.text(order, self.fmt.with_score, self.fmt.decimals)
        return self.encoder.prompt_ids(text), s.n_candidates, label, i

    def __getitem__(self, key):
        if self._fixed is not None:
            return self._fixed[key if isinstance(key, int) else key[0]]
        i, epoch = key
        order = np.random.default_rng([self.seed, epoch, i]).permutation(self.samples[i].n_candidates)
        return self._encode(i, order)


class _EpochBatches(ShuffleBatchSampler):
    """ShuffleBatchSampler's batches as (item, epoch) keys: the dataset draws each epoch's box order."""

    def __iter__(self):
        for batch in super().__iter__():
            yield [(i, self.epoch) for i in batch]


class GroundingData(pl.LightningDataModule):
    def __init__(self, samples: dict[str, list[Sample]], encoder: PromptEncoder, fmt, batch_size: int, seed: int):
        super().__init__()
        self.encoder, self.batch_size, self.seed = encoder, batch_size, seed
        self.train = Prompts(samples["train"], encoder, fmt, seed, fmt.order)
        self.valid = Prompts(samples["valid"], encoder, fmt, seed, "none") if samples["valid"] else None
        self.test = Prompts(samples["test"], encoder, fmt, seed, "none")

    @property
    def selection_split(self) -> str | None:
        return None if self.valid is None else "valid"

    def _collate(self, items):
        ids, n, labels, index = zip(*items)
        return self.encoder.batch(list(ids), list(n), list(labels)), torch.tensor(index)

    def train_dataloader(self) -> DataLoader:
        sampler = _EpochBatches(len(self.train), self.batch_size, self.seed, drop_last=False)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self._collate)

    def val_dataloader(self):
        if self.valid is None:
            return []
        return DataLoader(self.valid, batch_size=self.batch_size, collate_fn=self._collate)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1, collate_fn=lambda items: items[0])


def chosen_right(sample: Sample, index: int | None) -> bool:
    """P@1's test: the chosen candidate overlaps the ground truth with IoU > 0.5 (no answer: wrong)."""
    if index is None:
        return False
    return bool(box_iou(sample.boxes[index][None], np.asarray(sample.gt)[None])[0, 0] > 0.5)


class GroundingModule(RunModule):
    def __init__(self, cfg, lm, encoder: PromptEncoder, test_samples: list[Sample], valid_samples: list[Sample]):
        super().__init__(seed=cfg.train.seed, monitor="p@1", max_epochs=cfg.train.epochs)
        self.cfg, self.encoder = cfg, encoder
        object.__setattr__(self, "lm", lm)  # frozen and large: outside the checkpoint
        # the adapters, registered here so that they alone are the checkpoint and the optimizer's
        self.lora = nn.ParameterDict(
            {name.replace(".", "__"): p for name, p in lm.named_parameters() if p.requires_grad}
        )
        if not len(self.lora):
            raise ValueError("the language model has no trainable (LoRA) parameter")
        self.test_samples, self.valid_samples = test_samples, valid_samples
        self.extra: dict = {}
        self.answers: list[dict] = []
        self._outputs: list = []

    def _to_device(self) -> None:
        self.lm.to(self.device)

    on_fit_start = on_test_start = _to_device

    # the language model is not a registered child: its mode follows the loop's, set here (Lightning
    # restores its modules' modes after validation by attribute, which would leave it in eval mode)
    def on_train_batch_start(self, batch, batch_idx) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.lm.train()

    def _index_scores(self, batch) -> torch.Tensor:
        logits = logits_at(self.lm, batch, batch.answer_pos[:, None])  # (B, 1, V)
        return index_logits(logits, torch.zeros_like(batch.answer_pos), self.encoder.index_ids, batch.n_candidates)

    def training_step(self, data, batch_idx):
        batch, _ = data
        kind = self.cfg.loss.kind
        if kind == "generative":
            loss = answer_loss(logits_at(self.lm, batch, answer_positions(batch)), batch)
        else:
            loss = rank_loss(self._index_scores(batch), batch.labels.to(self.device), kind)
        self.record_loss(loss, len(batch.labels))
        return loss

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.lora.values(), lr=o.lr, weight_decay=o.weight_decay)
        steps = max(1, self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- validation: the index-logit argmax, one forward per prompt ---------------------------------
    def on_validation_epoch_start(self) -> None:
        self._to_device()
        self.lm.eval()
        self._outputs = []

    def validation_step(self, data, batch_idx) -> None:
        batch, index = data
        scores = self._index_scores(batch)
        for i, k in zip(index.tolist(), scores.argmax(1).tolist()):
            self._outputs.append(chosen_right(self.valid_samples[i], k))

    def on_validation_epoch_end(self) -> None:
        self.valid_metrics = {"p@1": float(np.mean(self._outputs))}
        self._entry()["valid/p@1"] = self.valid_metrics["p@1"]
        self.log("valid/p@1", self.valid_metrics["p@1"], prog_bar=True)

    # --- test: greedy decoding, tuned and zero-shot -------------------------------------------------
    def _answer(self, ids: list[int], n: int) -> tuple[str, torch.Tensor]:
        x = torch.tensor([ids], device=self.device)
        out = self.lm.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=self.cfg.prompt.max_new_tokens,
            do_sample=False,
            use_cache=True,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=self.encoder.pad,
            eos_token_id=self.encoder.end,
        )
        text = self.encoder.tok.decode(out.sequences[0, len(ids) :], skip_special_tokens=True)
        first = out.logits[0][0]  # the logits of the first answer token: one score per index token
        scores = first[self.encoder.index_ids].float().cpu()
        scores[n:] = -torch.inf
        return text, scores

    def test_step(self, item, batch_idx) -> None:
        ids, n, _, i = item
        sample = self.test_samples[i]
        row = {"query": i, "seen": int(sample.seen), "n_candidates": n}
        said = {"query": i, "expression": sample.expression.text, "template": sample.expression.template}
        with torch.no_grad():
            for name, adapters in (("tuned", True), ("zero_shot", False)):
                if adapters:
                    text, scores = self._answer(ids, n)
                else:
                    with self.lm.disable_adapter():
                        text, scores = self._answer(ids, n)
                index, error = parse_answer(text, n)
                row[f"{name}_answer"] = -1 if index is None else index
                row[f"{name}_p@1"] = int(chosen_right(sample, index))
                # the authors' protocol: no usable answer → the black box's own box
                row[f"{name}_fallback_p@1"] = int(chosen_right(sample, 0 if index is None else index))
                row[f"{name}_scores"] = scores
                # the ranking view's choice: the highest index logit (what the rank losses train)
                row[f"{name}_index_p@1"] = int(chosen_right(sample, int(scores.argmax())))
                said[name] = text
                said[f"{name}_error"] = error
        row["proposer_p@1"] = int(chosen_right(sample, 0))
        row["relevant"] = torch.from_numpy(box_iou(sample.boxes, np.asarray(sample.gt)[None])[:, 0] > 0.5)
        self._outputs.append((row, said))

    def on_test_epoch_start(self) -> None:
        self.lm.eval()
        self._outputs = []

    def on_test_epoch_end(self) -> None:
        rows = [r for r, _ in self._outputs]
        self.answers = [a for _, a in self._outputs]  # what each model wrote: answers.json
        relevant = torch.zeros((len(rows), 10), dtype=torch.bool)
        for b, r in enumerate(rows):
            rel = r.pop("relevant")
            relevant[b, : len(rel)] = rel
        summary = {}
        for name in ("tuned", "zero_shot"):
            scores = torch.stack([r.pop(f"{name}_scores") for r in rows])
            ranking = rank_metrics(scores, relevant, list(RANK_METRICS), reduce=None)
            summary[name] = self._summarise(rows, f"{name}_p@1", ranking, [a[f"{name}_error"] for a in self.answers])
            summary[name]["p@1_fallback"] = float(np.mean([r[f"{name}_fallback_p@1"] for r in rows]))
            by_index = self._summarise(rows, f"{name}_index_p@1")
            summary[name].update({f"p@1_index{part[3:]}": by_index[part] for part in ("p@1", "p@1_seen", "p@1_unseen")})
            for b, r in enumerate(rows):
                r[f"{name}_mrr"] = "" if ranking["mrr"][b].isnan() else round(float(ranking["mrr"][b]), 6)
        summary["proposer"] = self._summarise(rows, "proposer_p@1")
        self.test_metrics = summary["tuned"]
        self.extra = {"zero_shot": summary["zero_shot"], "proposer": summary["proposer"]}
        # test_per_query.csv: one row per test expression (numbers only: the expressions and the models'
        # words are in answers.json); *_answer is the chosen index, −1 when the answer had none or one
        # beyond the candidates
        self.test_per_query = PerQueryRows(rows)

    @staticmethod
    def _summarise(rows, key: str, ranking: dict | None = None, errors: list[str] | None = None) -> dict:
        seen = np.array([r["seen"] for r in rows], dtype=bool)
        right = np.array([r[key] for r in rows], dtype=float)
        out = {
            "p@1": float(right.mean()),
            "p@1_seen": float(right[seen].mean()) if seen.any() else float("nan"),
            "p@1_unseen": float(right[~seen].mean()) if (~seen).any() else float("nan"),
            "n_expressions": int(len(rows)),
        }
        if ranking is not None:
            for m in RANK_METRICS:
                v = ranking[m].numpy()
                out[m] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            out["n_unanswerable"] = int(np.isnan(ranking["mrr"].numpy()).sum())  # no candidate is the object
        if errors is not None:
            out["unparsed"] = int(sum(e == "no_int_generated" for e in errors))
            out["out_of_range"] = int(sum(e == "out_of_range" for e in errors))
        return out
