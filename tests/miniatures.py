"""Small dataset trees in the exact on-disk formats, shared by the loader and recipe tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def png(path: Path, color=(10, 20, 30), size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)


def _color(k: int) -> tuple[int, int, int]:
    return (37 * k % 256, 91 * k % 256, 53 * k % 256)


def write_sop(root: Path, n_classes: int = 8, per_class: int = 3, size: int = 40) -> None:
    lines, i = ["image_id class_id super_class_id path"], 0
    for c in range(1, n_classes + 1):
        for k in range(per_class):
            i += 1
            rel = f"cat{c % 2}_final/{c}_{k}.JPG"
            png(root / rel, _color(c * 7 + k), size)
            lines.append(f"{i} {c} {c % 2 + 1} {rel}")
    for split in ("train", "test"):
        (root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")


def write_cub(root: Path, n_classes: int = 12, per_class: int = 3, size: int = 40) -> None:
    for c in range(n_classes):
        for k in range(per_class):
            png(root / "images" / f"{c:03d}.Bird{c}" / f"{k}.jpg", _color(c * 5 + k), size)


def write_inat(root: Path, n_classes: int = 8, per_class: int = 3, size: int = 40) -> None:
    import json

    cats, rels = [], []
    for c in range(n_classes):
        sup = "Plantae" if c % 2 else "Animalia"
        cats.append(
            {
                "id": c,
                "name": f"s{c}",
                "supercategory": sup,
                "kingdom": sup,
                "phylum": "P",
                "class": "C",
                "order": f"O{c % 3}",
                "family": f"F{c % 4}",
                "genus": f"G{c}",
            }
        )
        for k in range(per_class):
            rel = f"train_val2018/{sup}/{c}/{k}.jpg"
            png(root / rel, _color(c * 3 + k), size)
            rels.append(rel)
    (root / "train2018.json").write_text(json.dumps({"categories": cats}))
    (root / "Inat_dataset_splits").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (root / f"Inat_dataset_splits/Inaturalist_{split}_set1.txt").write_text("\n".join(rels) + "\n")


def write_dyml(root: Path, n_classes: int = 8, per_class: int = 3, size: int = 40) -> None:
    rows, query = ["fname, fine_id0.jpg, middle_id, coarse_id"], ["fname, labels0.jpg"]
    for c in range(n_classes):
        for k in range(per_class):
            name = f"{c}_{k}.jpg"
            png(root / "train/imgs" / name, _color(c * 11 + k), size)
            png(root / "bmk_fine/query" / name, _color(c * 11 + k), size)
            png(root / "bmk_fine/gallery" / name, _color(c * 11 + k + 1), size)
            rows.append(f"{name}, {c}, {c // 2}, {c // 4}")
            query.append(f"{name}, {c}")
    (root / "train/label.csv").write_text("\n".join(rows) + "\n")
    (root / "bmk_fine/query.csv").write_text("\n".join(query) + "\n")
    (root / "bmk_fine/gallery.csv").write_text("\n".join(query) + "\n")
    # DyML-Product's single 3-level test set
    for c in range(n_classes):
        for k in range(per_class):
            png(root / "mini-bmk_all_in_one/imgs" / f"{c}_{k}.jpg", _color(c * 11 + k), size)
    (root / "mini-bmk_all_in_one/label.csv").write_text("\n".join(rows) + "\n")


def untimed(value):
    """A run result's field without the wall-clock ``seconds`` of its history entries (timing varies)."""
    if isinstance(value, list):
        return [{k: v for k, v in h.items() if k != "seconds"} if isinstance(h, dict) else h for h in value]
    return value


def kill_beside_reference(reference: list[str], killed: list[str], run: Path, env: dict, timeout: float = 600):
    """A kill test's two runs at once (independent processes; about half the wall clock on 2 cores):
    start the uninterrupted ``reference`` command, SIGKILL the ``killed`` one writing into ``run`` once
    its first epoch's checkpoint appears, and return the reference's CompletedProcess. The reference
    is stopped if anything fails first, so a failing test leaves no process behind."""
    import signal
    import subprocess

    proc = subprocess.Popen(reference, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        code = kill_after_first_epoch(killed, run, env)
        assert code == -signal.SIGKILL, f"the killed run ended by itself (exit {code}) before its first checkpoint"
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(reference, proc.returncode, out, err)


def kill_after_first_epoch(argv: list[str], run: Path, env: dict, timeout: float = 300, stage: str = "") -> int:
    """Start a training command writing into ``run`` and SIGKILL it the moment epoch 1's last.ckpt
    appears (epoch 2 is then under way; ``stage``: of that stage's sub-folder); returns its return code."""
    import os
    import signal
    import subprocess
    import time

    last = run / stage / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    if proc.poll() is None:  # (one that ended by itself is already reaped: its code is the answer)
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of uint8 values (Fashion-MNIST's format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion(root: Path, n_train: int, n_test: int) -> Path:
    """A tiny Fashion-MNIST in IDX format: 10 class prototypes plus noise, labels cycling 0..9."""
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 255, size=(10, 28, 28))
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.clip(protos[labels] * 0.6 + rng.integers(0, 100, size=(n, 28, 28)), 0, 255)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root
