"""The driving task's config (``rankopt drive``): VaViM / VaVAM's pipeline in miniature — episodes from
highway-env, a VQ-VAE tokenizer, the video GPT, the action expert, closed-loop evaluation. The authors'
settings where they carry over (flow matching: σ_min 1e-3, Beta(1.5, 1) time law, 10 Euler steps; 6
waypoints; 3 commands; the action expert as deep as the GPT and narrower), sizes for 2 CPU cores.

>>> cfg = WorldRunConfig().validate()
>>> cfg.gpt.width, cfg.action.horizon, cfg.action.euler_steps
(128, 6, 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rankopt.config import check_choices, check_range, setting

__all__ = ["WorldRunConfig"]


@dataclass
class EpisodeConfig:
    root: str | None = setting(None, help="a recorded episode folder to read (None: record into the run folder)")
    episodes: int = setting(24, help="expert episodes to record (split 70/15/15 by episode)")
    steps: int = setting(60, help="policy steps per episode (5 per second)")
    height: int = setting(32, help="frame height in pixels (a multiple of 4)")
    width: int = setting(64, help="frame width in pixels (a multiple of 4)")
    densities: list = setting(help="traffic densities, cycled over the episodes", default_factory=lambda: [1.0, 1.5])


@dataclass
class TokenizerConfig:
    codes: int = setting(128, help="VQ codebook size (authors' LlamaGen tokenizer: 16,384)")
    dim: int = setting(16, help="code dimension")
    width: int = setting(32, help="encoder / decoder channels")
    dead_after: int = setting(
        10, help="training steps a code may stay unused before it is re-initialised on an encoder output"
    )
    epochs: int = setting(30, help="training epochs over the training frames (a few seconds each)")
    lr: float = setting(2e-3, help="Adam learning rate")


@dataclass
class GPTConfig:
    frames: int = setting(4, help="frames per window (authors: 8)")
    width: int = setting(128, help="embedding width (authors: 768 / 1024 / 2048)")
    layers: int = setting(4, help="transformer layers (authors: 24)")
    head_dim: int = setting(32, help="attention head width (authors: 128)")
    epochs: int = setting(6, help="training epochs over the windows")
    lr: float = setting(1e-3, help="AdamW learning rate")
    pretrained: bool = setting(
        True, help="train the GPT on the video first (VaViM); false: the action expert on a random, frozen GPT"
    )


@dataclass
class ActionConfig:
    width: int = setting(64, help="action expert width (authors: 192 for the S model)")
    horizon: int = setting(6, help="waypoints per trajectory (authors: 6)")
    stride: int = setting(2, help="policy steps between waypoints (0.4 s at 5 Hz)")
    scale: float = setting(20.0, help="waypoints divided by this before flow matching (authors: 70 on nuScenes)")
    sig_min: float = setting(1e-3, help="flow matching's σ_min (authors: 1e-3)")
    time_law: str = setting("beta", choices=("beta", "uniform"), help="flow time law (authors: beta = π0's)")
    euler_steps: int = setting(10, help="Euler steps of sampling (authors: 10)")
    samples: int = setting(5, help="trajectories sampled per context (minADE@k for k up to this)")
    epochs: int = setting(8, help="training epochs over the windows")
    lr: float = setting(1e-3, help="AdamW learning rate")


@dataclass
class ClosedLoopConfig:
    episodes: int = setting(6, help="closed-loop episodes per scenario and policy")
    steps: int = setting(40, help="policy steps per closed-loop episode")
    scenarios: list = setting(
        help="scenarios: traffic, stopped (a stopped car ahead), cut-in", default_factory=lambda: ["traffic", "stopped"]
    )


@dataclass
class WorldTrainConfig:
    seed: int = setting(0, help="seed of the episodes, the models and sampling")
    batch_size: int = setting(16, help="windows (or frames ×4 for the tokenizer) per step")
    accelerator: str = setting("auto", help="Lightning accelerator: auto, cpu, gpu")
    devices: Any = setting(1, help="Lightning devices")
    precision: str = setting("32-true", help="Lightning precision")
    run_dir: str | None = setting(None, help="the run folder (default: runs/<recipe>-<timestamp>)")


@dataclass
class WorldRunConfig:
    task: ClassVar[str] = "world"
    recipe: str = "drive-highway"
    data: EpisodeConfig = field(default_factory=EpisodeConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    gpt: GPTConfig = field(default_factory=GPTConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    closed_loop: ClosedLoopConfig = field(default_factory=ClosedLoopConfig)
    train: WorldTrainConfig = field(default_factory=WorldTrainConfig)

    def validate(self) -> WorldRunConfig:
        check_choices(self)
        d, k, g, a, c, t = self.data, self.tokenizer, self.gpt, self.action, self.closed_loop, self.train
        for key, value in (
            ("data.episodes", d.episodes),
            ("data.steps", d.steps),
            ("tokenizer.epochs", k.epochs),
            ("tokenizer.dead_after", k.dead_after),
            ("gpt.frames", g.frames),
            ("gpt.layers", g.layers),
            ("gpt.epochs", g.epochs),
            ("action.horizon", a.horizon),
            ("action.stride", a.stride),
            ("action.euler_steps", a.euler_steps),
            ("action.samples", a.samples),
            ("action.epochs", a.epochs),
            ("closed_loop.episodes", c.episodes),
            ("closed_loop.steps", c.steps),
            ("train.batch_size", t.batch_size),
        ):
            check_range(key, value, 1)
        check_range("data.episodes", d.episodes, 3)
        check_range("tokenizer.codes", k.codes, 2)
        for key, value in (("data.height", d.height), ("data.width", d.width)):
            if not isinstance(value, int) or value < 8 or value % 4:
                raise ValueError(f"{key}={value}: frames need a side of at least 8 pixels, a multiple of 4")
        if g.width % g.head_dim:
            raise ValueError(f"gpt.width={g.width} is not a multiple of gpt.head_dim={g.head_dim}")
        if a.width % 2:
            raise ValueError(f"action.width={a.width} must be even (the flow time's sin / cos embedding)")
        for key, value in (("tokenizer.lr", k.lr), ("gpt.lr", g.lr), ("action.lr", a.lr), ("action.scale", a.scale)):
            check_range(key, value, 0, low_open=True)
        check_range("action.sig_min", a.sig_min, 0, 1, high_open=True)
        window = g.frames + a.stride * a.horizon
        if window >= d.steps:
            raise ValueError(
                f"a window of {g.frames} frames plus {a.horizon} × {a.stride} steps of waypoints ({window} steps) "
                f"does not fit episodes of data.steps={d.steps}"
            )
        unknown = [s for s in c.scenarios if s not in ("traffic", "stopped", "cut-in")]
        if unknown or not c.scenarios:
            raise ValueError(f"closed_loop.scenarios={c.scenarios}: expected some of traffic, stopped, cut-in")
        return self
