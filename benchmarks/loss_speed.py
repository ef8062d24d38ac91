"""Forward + backward time and peak memory of the rank losses, next to pytorch-metric-learning.

512-d L2-normalised embeddings, 4 images per class. In-batch for B in {128, 256, 512, 1024}; and
B = 256 against a memory bank of M in {4,096, 60,000} SOP-like items (≈5 per class, 12
super-classes, so with 2-level labels thousands of items share each query's super-class).
"binned" rows use bin_width = τ/10 (see rankopt.losses.binned_kernel for its error bound).
Each measurement runs in its own process so its peak memory is its own (CPU: peak RSS above the
process's state before the step; CUDA: torch.cuda.max_memory_allocated).

Usage: python benchmarks/loss_speed.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

LOSSES = [
    "SupAP",
    "SupAP binned",
    "SmoothAP",
    "HAP",
    "HAP binned",
    "SupRecall",
    "SupNDCG",
    "PML SmoothAPLoss",
    "PML FastAPLoss",
]


def make(b: int, m: int, dim: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n_classes = max(1, b // 4)
    fine = torch.arange(b) // 4  # 4 per class, grouped (what PML's SmoothAPLoss needs)
    coarse = fine % 12
    x = torch.nn.functional.normalize(torch.randn(b, dim, generator=g), dim=1)
    batch = (x.to(device), torch.stack([fine, coarse], 1).to(device))
    if not m:
        return batch, None
    mem_fine = torch.randint(0, max(n_classes, m // 5), (m,), generator=g)
    mem_fine[:b] = fine  # the batch is in the memory (enqueued before the loss)
    mem = torch.nn.functional.normalize(torch.randn(m, dim, generator=g), dim=1)
    mem[:b] = x
    return batch, (mem.to(device), torch.stack([mem_fine, mem_fine % 12], 1).to(device))


def run_one(name: str, b: int, m: int, device: str) -> dict:
    dev = torch.device(device)
    (x, labels), memory = make(b, m, 512, dev)
    hierarchical = name.split()[0] in ("HAP", "SupNDCG")
    lab = labels if hierarchical else labels[:, 0]
    if name.startswith("PML"):
        from pytorch_metric_learning import losses as pml

        if memory is not None:
            return {"skipped": "no reference-set support"}
        if name == "PML SmoothAPLoss":
            est = 6 * 4 * b**3
            if est > 16 * 2**30:
                return {"skipped": f"needs ~{est / 2**30:.0f} GB (B³ tensors)"}
            loss_fn = pml.SmoothAPLoss(temperature=0.01)
        else:
            loss_fn = pml.FastAPLoss(num_bins=10)
        call = lambda e: loss_fn(e, lab)
    else:
        import rankopt.losses as rl

        cls_name, *mode = name.split()
        if memory is not None and not mode and hierarchical and m * b * (m // 12) > 2e10:
            return {"skipped": f"~{m * b * (m // 12):.0e} exact pairs; see the binned row"}
        loss_fn = getattr(rl, cls_name)(bin_width=0.001) if mode == ["binned"] else getattr(rl, cls_name)()
        if memory is None:
            call = lambda e: loss_fn(e, lab)
        else:
            mem_lab = memory[1] if hierarchical else memory[1][:, 0]
            call = lambda e: loss_fn(e, lab, memory[0], mem_lab)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before any step: the high-water mark
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    emb = x.clone().requires_grad_()
    t_warm = time.perf_counter()
    call(emb).backward()  # warm-up
    t_warm = time.perf_counter() - t_warm
    reps = 3 if t_warm < 5 else 1
    t0 = time.perf_counter()
    for _ in range(reps):
        emb = x.clone().requires_grad_()
        value = call(emb)
        value.backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - t0) / reps
    peak = (
        torch.cuda.max_memory_allocated()
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    )
    return {"seconds": elapsed, "peak": peak, "value": float(value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="B in {128, 256} and M = 4,096 only")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, b, m = args.worker
        print(json.dumps(run_one(name, int(b), int(m), args.device)))
        return
    configs = [(b, 0) for b in ((128, 256) if args.quick else (128, 256, 512, 1024))]
    configs += [(256, m) for m in ((4096,) if args.quick else (4096, 60000))]
    gpu = args.device.startswith("cuda")
    print(
        f"{'GPU ' + torch.cuda.get_device_name() if gpu else f'CPU, {torch.get_num_threads()} threads'}, torch "
        f"{torch.__version__}, 512-d\n"
    )
    print("| loss | " + " | ".join(f"B={b}" + (f", M={m}" if m else "") for b, m in configs) + " |")
    print("|---|" + "---|" * len(configs))
    for name in LOSSES:
        cells = []
        for b, m in configs:
            proc = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--worker", name, str(b), str(m)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
                cells.append(f"failed ({tail[:60]})")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if "skipped" in r:
                cells.append(f"– ({r['skipped']})")
            else:
                cells.append(f"{r['seconds'] * 1000:.0f} ms / {r['peak'] / 2**20:.0f} MB")
            print(f"# {name} B={b} M={m}: {cells[-1]}", file=sys.stderr, flush=True)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\ncells: forward + backward time per step / peak memory above the state before the step")


if __name__ == "__main__":
    main()
