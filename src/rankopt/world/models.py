"""VaViM (a GPT over the VQ tokens of video frames) and VaVAM's action expert, coupled by joint attention,
after valeoai/VideoActionModel (``mup_gpt2.py``, ``mup_action_expert.py``, ``joint_model.py``).

VaViM: token + spatial-position + temporal-position embeddings; pre-norm blocks (LayerNorm without
affine parameters, bias-free linear layers, GELU MLP ×4); attention scaled by 1/d_head (μP's scaling;
μP's initialisation and readout multipliers are not ported); the output head tied to the token
embedding; causal over the flattened (frame, row, column) sequence.

Action expert: the same depth, its own width. Its input per action token: a linear map of the noisy
waypoint + the command's embedding + the waypoint's position embedding, concatenated with the flow
time's sinusoidal embedding, then Linear → SiLU → Linear. In every layer the two streams attend
jointly: queries, keys and values of both are concatenated and masked by
:func:`rankopt.world.masks.joint_attention_mask` (so the visual stream computes exactly what VaViM
alone computes), then each stream has its own output projection and MLP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rankopt.world.masks import joint_attention_mask

__all__ = ["VideoGPT", "ActionExpert", "JointModel", "time_embedding", "generate_frame"]


class _MLP(nn.Module):
    def __init__(self, dim: int, act: nn.Module) -> None:
        super().__init__()
        self.c_fc, self.act, self.c_proj = nn.Linear(dim, 4 * dim, bias=False), act, nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class _Block(nn.Module):
    """One stream's layer: pre-norm, q/k/v of width ``attn_dim`` in heads of ``head_dim``, MLP."""

    def __init__(self, dim: int, attn_dim: int, head_dim: int, act: nn.Module) -> None:
        super().__init__()
        if attn_dim % head_dim:
            raise ValueError(f"attention width {attn_dim} is not a multiple of the head width {head_dim}")
        self.head_dim = head_dim
        self.ln_1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.c_attn = nn.Linear(dim, 3 * attn_dim, bias=False)
        self.c_proj = nn.Linear(attn_dim, dim, bias=False)
        self.ln_2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = _MLP(dim, act)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, s, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).reshape(b, s, 3, -1, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, heads, S, head_dim)

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual attention output ``y`` (B, heads, S, head_dim), then the residual MLP."""
        b, _, s, _ = y.shape
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, s, -1))
        return x + self.mlp(self.ln_2(x))


def _attend(q, k, v, mask) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / q.shape[-1])  # μP: 1/d


class VideoGPT(nn.Module):
    """Next-token prediction over the tokens of ``frames`` frames of ``per_frame`` tokens each."""

    def __init__(self, vocab: int, frames: int, per_frame: int, dim: int = 128, layers: int = 4, head_dim: int = 32):
        super().__init__()
        self.vocab, self.frames, self.per_frame, self.dim = vocab, frames, per_frame, dim
        self.wie = nn.Embedding(vocab, dim)  # tokens
        self.wse = nn.Embedding(per_frame, dim)  # spatial position within a frame
        self.wte = nn.Embedding(frames, dim)  # temporal position (frame index)
        self.blocks = nn.ModuleList([_Block(dim, dim, head_dim, nn.GELU()) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, elementwise_affine=False)
        nn.init.normal_(self.wie.weight, std=0.02)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, h, w) → (B, T·h·w, dim), flattened frame by frame, row by row."""
        b, t, h, w = tokens.shape
        if h * w != self.per_frame or t > self.frames:
            raise ValueError(
                f"tokens of {t} frames of {h} × {w}; the model reads up to {self.frames} frames of "
                f"{self.per_frame} tokens"
            )
        flat = tokens.reshape(b, t * h * w)
        space = torch.arange(h * w, device=tokens.device).repeat(t)
        time = torch.arange(t, device=tokens.device).repeat_interleave(h * w)
        return self.wie(flat) + self.wse(space)[None] + self.wte(time)[None]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_f(x) @ self.wie.weight.T  # the output head is the token embedding (tied)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, vocab) logits; position i predicts token i + 1."""
        x = self.embed(tokens)
        s = x.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        for block in self.blocks:
            q, k, v = block.qkv(x)
            x = block.finish(x, _attend(q, k, v, causal))
        return self.logits(x)


@torch.no_grad()
def generate_frame(gpt: VideoGPT, context: torch.Tensor, generator: torch.Generator | None = None, temperature=1.0):
    """The next frame's tokens after ``context`` (B, T, h, w), T < gpt.frames, drawn one token at a time
    from the GPT (temperature 0: the most likely token) → (B, h, w)."""
    b, t, h, w = context.shape
    tokens = torch.cat([context, torch.zeros(b, 1, h, w, dtype=context.dtype, device=context.device)], 1)
    flat = tokens.reshape(b, -1)
    start = t * h * w
    for i in range(h * w):
        logits = gpt(flat.reshape(b, t + 1, h, w))[:, start + i - 1]  # position p predicts token p + 1
        if temperature == 0:
            flat[:, start + i] = logits.argmax(-1)
        else:
            probs = (logits / temperature).softmax(-1)
            flat[:, start + i] = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return flat[:, start:].reshape(b, h, w)


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """The flow time's sinusoidal embedding (B,) → (B, dim): sin then cos of t·exp(−k log(P)/(dim/2 − 1))."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(max_period) / (half - 1))).to(t.dtype)
    arg = t[:, None] * freq[None]
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


class ActionExpert(nn.Module):
    """The action stream: ``layers`` blocks of width ``dim`` whose attention has the GPT's width."""

    def __init__(self, gpt: VideoGPT, dim: int = 64, horizon: int = 6, action_dim: int = 2, commands: int = 3):
        super().__init__()
        head_dim = gpt.blocks[0].head_dim
        self.dim, self.horizon, self.action_dim = dim, horizon, action_dim
        self.linear_1 = nn.Linear(action_dim, dim, bias=False)
        self.command = nn.Embedding(commands, dim)
        self.position = nn.Embedding(horizon, dim)
        self.linear_2 = nn.Linear(2 * dim, dim, bias=False)
        self.linear_3 = nn.Linear(dim, dim, bias=False)
        self.blocks = nn.ModuleList([_Block(dim, gpt.dim, head_dim, nn.GELU()) for _ in gpt.blocks])
        self.ln_f = nn.LayerNorm(dim, elementwise_affine=False)
        self.decoder = nn.Linear(dim, action_dim, bias=False)

    def embed(self, actions: torch.Tensor, command: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """actions (B, T, H, 2), command (B, T), flow time t (B, T) → (B, T·H, dim)."""
        b, frames, h, _ = actions.shape
        if h != self.horizon:
            raise ValueError(f"{h} waypoints per block; the action expert predicts {self.horizon}")
        x = self.linear_1(actions) + self.command(command)[:, :, None] + self.position.weight[None, None, :h]
        te = time_embedding(t.reshape(-1), self.dim).reshape(b, frames, 1, self.dim).expand(-1, -1, h, -1)
        x = self.linear_3(F.silu(self.linear_2(torch.cat([te.to(x.dtype), x], dim=-1))))
        return x.reshape(b, frames * h, self.dim)


class JointModel(nn.Module):
    """VaVAM: the GPT and the action expert attending jointly; returns the velocity of every waypoint
    (B, T, H, 2) and, when asked, the GPT's logits (identical to the GPT alone's)."""

    def __init__(self, gpt: VideoGPT, expert: ActionExpert) -> None:
        super().__init__()
        self.gpt, self.expert = gpt, expert

    def forward(self, tokens, actions, command, t, return_logits: bool = False):
        frames = tokens.shape[1]
        v = self.gpt.embed(tokens)
        a = self.expert.embed(actions, command, t)
        mask = joint_attention_mask(frames, self.gpt.per_frame, self.expert.horizon).to(v.device)
        n_v = v.shape[1]
        for gb, ab in zip(self.gpt.blocks, self.expert.blocks):
            (vq, vk, vv), (aq, ak, av) = gb.qkv(v), ab.qkv(a)
            y = _attend(torch.cat([vq, aq], 2), torch.cat([vk, ak], 2), torch.cat([vv, av], 2), mask)
            v, a = gb.finish(v, y[:, :, :n_v]), ab.finish(a, y[:, :, n_v:])
        velocity = self.expert.decoder(self.expert.ln_f(a)).reshape(actions.shape)
        return (velocity, self.gpt.logits(v)) if return_logits else velocity

    @torch.no_grad()
    def visual_cache(self, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's visual keys and values of a context (B, T, h, w): what every sampling step of
        the action expert reads again (the authors' KV cache)."""
        v = self.gpt.embed(tokens)
        s = v.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=v.device).tril()
        cache = []
        for block in self.gpt.blocks:
            q, k, vv = block.qkv(v)
            cache.append((k, vv))
            v = block.finish(v, _attend(q, k, vv, causal))
        return cache

    def last_block_velocity(self, cache, actions: torch.Tensor, command: torch.Tensor, t: torch.Tensor):
        """The velocity of one action block after the whole context (the authors' inference mask: it
        sees every visual token and itself): actions (B, H, 2), command (B,), t (B,) → (B, H, 2)."""
        a = self.expert.embed(actions[:, None], command[:, None], t[:, None])
        for (vk, vv), ab in zip(cache, self.expert.blocks):
            aq, ak, av = ab.qkv(a)
            a = ab.finish(a, _attend(aq, torch.cat([vk, ak], 2), torch.cat([vv, av], 2), None))
        return self.expert.decoder(self.expert.ln_f(a)).reshape(actions.shape)
