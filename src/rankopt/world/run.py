"""``rankopt drive``: VaViM / VaVAM in miniature, one stage after the other in one run folder —
record expert episodes (``data/``), train the tokenizer (``tokenizer/``), the video GPT (``gpt/``) and
the action expert (``vavam/``), then drive in closed loop. Each stage is a run of the engine in its
sub-folder (checkpoints, its own ``result.json`` when done): a resumed run skips the finished stages
and continues the interrupted one from its last checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rankopt.atomic import atomic_write_text
from rankopt.runs import RunFolder, fingerprint, is_rank_zero
from rankopt.train.engine import fit
from rankopt.world.closed_loop import drive
from rankopt.world.config import WorldRunConfig
from rankopt.world.episodes import read_episodes, record_episodes
from rankopt.world.models import ActionExpert, JointModel, VideoGPT, generate_frame
from rankopt.world.module import ActionModule, StageData, TokenizerModule, VideoModule, window_tensors
from rankopt.world.objectives import sample_trajectories
from rankopt.world.sequences import copy_rate, make_windows
from rankopt.world.tokenizer import VQVAE

__all__ = ["drive_run", "STAGES"]

log = logging.getLogger(__name__)
STAGES = ("tokenizer", "gpt", "vavam")


def _stage(module, data, stage_dir: Path, epochs: int, cfg: WorldRunConfig, progress: bool) -> dict:
    """Fit one stage (or continue it from its last checkpoint), or read it back when it is done;
    the module is left holding the selected weights."""
    done = stage_dir / "result.json"
    best = stage_dir / "checkpoints" / "best.ckpt"
    if done.is_file():
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        return json.loads(done.read_text())
    last = stage_dir / "checkpoints" / "last.ckpt"
    t = cfg.train
    result = fit(
        module,
        data,
        stage_dir,
        epochs=epochs,
        resume=last if last.is_file() else None,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        progress=progress,
    )
    # the engine's test has loaded the selected (best) weights into the module already
    out = {k: result[k] for k in ("test", "selection", "valid", "history")}
    if result["is_global_zero"]:
        if result["test_per_query"] is not None:
            result["test_per_query"].write_csv(stage_dir / "test_per_query.csv")
        atomic_write_text(done, json.dumps(out, indent=1))
    return out


def _episodes(cfg: WorldRunConfig, folder: RunFolder):
    d = cfg.data
    if d.root is not None:
        return read_episodes(d.root)
    root = folder.path / "data"
    if (root / "manifest.json").is_file():
        return read_episodes(root)
    return record_episodes(
        root,
        d.episodes,
        cfg.train.seed,
        steps=d.steps,
        frame_shape=(d.height, d.width),
        densities=tuple(d.densities),
    )


def drive_run(cfg: WorldRunConfig, folder: RunFolder, resume: Path | None = None, progress: bool = True) -> dict:
    d, a, g, t = cfg.data, cfg.action, cfg.gpt, cfg.train
    episodes = _episodes(cfg, folder)
    if tuple(episodes.frame_shape) != (d.height, d.width):
        raise ValueError(
            f"the episodes in {episodes.root} have frames of {episodes.frame_shape}; the config says "
            f"data.height={d.height}, data.width={d.width}"
        )
    loaded = {s: [episodes.load(f) for f in episodes.names(s)] for s in ("train", "valid", "test")}
    data_fp = fingerprint(*[e.frames for s in loaded.values() for e in s])
    if resume is not None:
        folder.check_data(data_fp, "the episodes")
    if is_rank_zero():
        folder.write_config(cfg)
        folder.write_manifest(data_fp, fingerprint(*[e.frames for e in loaded["test"]]))
    torch.manual_seed(t.seed)

    # 1. tokenizer, on single frames
    frames = {
        s: torch.from_numpy(np.concatenate([e.frames for e in eps]))[:, None].float() / 255 for s, eps in loaded.items()
    }
    k = cfg.tokenizer
    vqvae = VQVAE(k.codes, k.dim, k.width, dead_after=k.dead_after)
    tok = _stage(
        TokenizerModule(vqvae, k.lr, t.seed, k.epochs),
        StageData(*(TensorDataset(frames[s]) for s in ("train", "valid", "test")), 4 * t.batch_size, t.seed),
        folder.path / "tokenizer",
        k.epochs,
        cfg,
        progress,
    )
    vqvae.eval()

    # 2. windows of tokens; the video GPT
    def windows(split):
        eps = [
            (vqvae.encode(torch.from_numpy(e.frames)[:, None].float() / 255).numpy(), e.poses, e.commands)
            for e in loaded[split]
        ]
        # every start for training; every third for valid / test (neighbouring windows share most frames)
        return make_windows(eps, g.frames, a.horizon, a.stride, step=1 if split == "train" else 3)

    win = {s: windows(s) for s in ("train", "valid", "test")}
    h, w = win["train"].tokens.shape[2:]
    gpt = VideoGPT(k.codes, g.frames, h * w, g.width, g.layers, g.head_dim)
    data = StageData(*(window_tensors(win[s]) for s in ("train", "valid", "test")), t.batch_size, t.seed)
    p_copy = min(max(copy_rate(win["train"].tokens), 1e-4), 1 - 1e-4)
    video = None
    if g.pretrained:
        video = _stage(
            VideoModule(gpt, g.lr, t.seed, g.epochs, p_copy), data, folder.path / "gpt", g.epochs, cfg, progress
        )

    # 3. the action expert on the frozen GPT
    torch.manual_seed(t.seed + 1)
    joint = JointModel(gpt, ActionExpert(gpt, a.width, a.horizon))
    action = _stage(ActionModule(joint, cfg, t.seed), data, folder.path / "vavam", a.epochs, cfg, progress)
    joint.eval()

    if is_rank_zero():
        _write_examples(folder, cfg, vqvae, joint, win["test"])

    # 4. closed loop
    loop = _closed_loop(cfg, vqvae, joint)
    out = {
        "test": {**action["test"], **loop["vavam"]},
        "constant_velocity": {"min_ade@1": action["test"]["constant_velocity_ade"], **loop["constant"]},
        "expert": loop["expert"],
        "perplexity": None if video is None else video["test"]["perplexity"],
        "copy_last_frame_perplexity": None if video is None else video["test"]["copy_last_frame_perplexity"],
        "tokenizer": tok["test"],
        "video": None if video is None else video["test"],
        "selection": action["selection"],
        "valid": action["valid"],
        "history": action["history"],
        "stages": {"tokenizer": tok["selection"], "gpt": None if video is None else video["selection"]},
        "run_dir": str(folder.path),
    }
    if is_rank_zero():
        shutil.copyfile(folder.path / "vavam" / "test_per_query.csv", folder.per_query_path)  # per test window
        folder.write_results(out)
    return out


@torch.no_grad()
def _write_examples(folder: RunFolder, cfg: WorldRunConfig, vqvae: VQVAE, joint: JointModel, test, n: int = 4) -> None:
    """examples.npz for the report: for the first ``n`` test windows, the context frames and the real
    last frame (through the tokenizer), the GPT's generated last frame, and the sampled, true and
    constant-velocity trajectories of the last frame."""
    a = cfg.action
    gen = torch.Generator().manual_seed(cfg.train.seed)
    tokens, commands, waypoints, speed = (x[:n] for x in (test.tokens, test.commands, test.waypoints, test.speed))
    real = vqvae.decode(tokens.flatten(0, 1)).reshape(*tokens.shape[:2], *vqvae.decode(tokens[:1, 0]).shape[-2:])
    generated = vqvae.decode(generate_frame(joint.gpt, tokens[:, :-1], gen, temperature=1.0))[:, 0]
    samples = sample_trajectories(joint, tokens, commands, a.samples, scale=a.scale, steps=a.euler_steps, generator=gen)
    k = np.arange(1, a.horizon + 1) * a.stride / 5.0
    cv = np.stack([speed.numpy()[:, None] * k, np.zeros((len(speed), len(k)))], -1)
    np.savez_compressed(
        folder.file("examples.npz"),
        frames=(real.numpy() * 255).round().astype(np.uint8),
        generated=(generated.numpy() * 255).round().astype(np.uint8),
        samples=samples.numpy(),
        truth=waypoints[:, -1].numpy(),
        constant_velocity=cv,
    )


def _closed_loop(cfg: WorldRunConfig, vqvae: VQVAE, joint: JointModel) -> dict:
    """Collision rate and progress of VaVAM, the constant-velocity policy and the IDM expert, over the
    scenarios × ``closed_loop.episodes`` seeds (seeds apart from the recorded episodes')."""
    a, c, d = cfg.action, cfg.closed_loop, cfg.data
    frames_needed = cfg.gpt.frames
    gen = torch.Generator().manual_seed(cfg.train.seed)

    def vavam_policy():
        history: list[np.ndarray] = []

        def policy(frame, pose, command):
            history.append(frame)
            context = history[-frames_needed:]
            context = [context[0]] * (frames_needed - len(context)) + context  # the first frame repeated at the start
            x = torch.from_numpy(np.stack(context))[:, None].float() / 255
            tokens = vqvae.encode(x)[None]  # (1, T, h, w)
            commands = torch.full((1, frames_needed), command, dtype=torch.long)
            traj = sample_trajectories(joint, tokens, commands, 1, scale=a.scale, steps=a.euler_steps, generator=gen)
            return traj[0, 0].numpy()

        return policy

    results = {}
    for name in ("vavam", "constant", "expert"):
        runs = []
        for scenario in c.scenarios:
            for e in range(c.episodes):
                seed = 10_000 + 1000 * cfg.train.seed + e
                policy = vavam_policy() if name == "vavam" else name
                runs.append(drive(policy, scenario, seed, steps=c.steps, frame_shape=(d.height, d.width)))
        results[name] = {
            "collision_rate": float(np.mean([r["crashed"] for r in runs])),
            "progress": float(np.mean([r["progress"] for r in runs])),
            "episodes": len(runs),
        }
    return results
