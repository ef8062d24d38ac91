"""``rankopt ground``: LLM-wrapper on offline parts, into a run folder — scenes and black-box proposals,
LoRA fine-tuning of the language model on the candidates-as-text prompts, then the test P@1 of the
tuned model beside the proposer alone and the untuned model on the same test expressions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from rankopt.atomic import atomic_write_text
from rankopt.grounding.config import GroundingRunConfig
from rankopt.grounding.data import GroundingSet, build_samples
from rankopt.grounding.language_model import PromptEncoder, add_lora, load_language_model
from rankopt.grounding.module import GroundingData, GroundingModule
from rankopt.runs import RunFolder, fingerprint, is_rank_zero
from rankopt.train.engine import fit

__all__ = ["ground_run", "data_fingerprint", "write_scenes"]

log = logging.getLogger(__name__)


def data_fingerprint(data: GroundingSet) -> tuple[str, str]:
    """(every split's, the test split's) fingerprint: scene images, boxes, expressions and candidates."""

    def parts(split: str) -> list:
        out = [split]
        for s in data.samples[split]:
            out += [data.scenes[split][s.scene].image, np.asarray(s.gt), s.expression.text, s.boxes, s.label]
        return out

    return fingerprint(*parts("train"), *parts("valid"), *parts("test")), fingerprint(*parts("test"))


def write_scenes(folder: RunFolder, data: GroundingSet, limit: int = 12) -> None:
    """scenes.npz (the first ``limit`` test scenes' images) and scenes.json (their expressions, ground
    truth and candidates) for the report."""
    keep = sorted({s.scene for s in data.samples["test"]})[:limit]
    images = np.stack([data.scenes["test"][i].image for i in keep]) if keep else np.zeros((0, 1, 1), np.uint8)
    np.savez_compressed(folder.file("scenes.npz"), images=images, scenes=np.asarray(keep))
    rows = [
        {
            "query": q,
            "scene": s.scene,
            "expression": s.expression.text,
            "template": s.expression.template,
            "gt": list(s.gt),
            "boxes": s.boxes.round(1).tolist(),
            "phrases": [p for c in s.candidates for p in c.phrases],
        }
        for q, s in enumerate(data.samples["test"])
        if s.scene in keep
    ]
    atomic_write_text(folder.file("scenes.json"), json.dumps(rows))


def ground_run(cfg: GroundingRunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    """Build the samples, load the language model (a missing package fails here, before any write),
    train LoRA, test once; write and return metrics.json."""
    data = build_samples(cfg)
    m, t = cfg.model, cfg.train
    model, tokenizer = load_language_model(m.language_model, seed=t.seed, progress=progress)
    every, test_only = data_fingerprint(data)
    if resume is not None:
        folder.check_data(every, "the scenes")
    if is_rank_zero():
        folder.write_config(cfg)
        folder.write_manifest(every, test_only, extra={"samples": data.describe()})
        write_scenes(folder, data)
    torch.manual_seed(t.seed)  # the LoRA weights' initialisation
    lm = add_lora(model, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_targets, m.lora_layers)
    encoder = PromptEncoder(tokenizer, cfg.prompt.max_tokens)
    module = GroundingModule(cfg, lm, encoder, data.samples["test"], data.samples["valid"])
    loaders = GroundingData(data.samples, encoder, cfg.prompt, t.batch_size, t.seed)
    with folder.announced():
        result = fit(
            module,
            loaders,
            folder.path,
            epochs=t.epochs,
            resume=resume,
            accelerator=t.accelerator,
            devices=t.devices,
            precision=t.precision,
            progress=progress,
            patience=t.patience,
            time_limit=t.time_limit,
        )
    out = {
        "test": result["test"],
        "proposer": module.extra["proposer"],
        "zero_shot": module.extra["zero_shot"],
        "loss": cfg.loss.kind,
        "proposers": {"train": cfg.proposer.train, "test": cfg.proposer.test, "ensemble": cfg.proposer.ensemble},
        "language_model": m.language_model,
        "selection": result["selection"],
        "valid": result["valid"],
        "history": result["history"],
        "protocol": data.describe(),
        "run_dir": str(folder.path),
    }
    if result["is_global_zero"]:
        atomic_write_text(folder.file("answers.json"), json.dumps(module.answers, indent=1))
        folder.write_results(out, result["test_per_query"])
    return out
