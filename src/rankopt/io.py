"""Embedding and feature files in and out: ``.npz`` archives read with their checks, written atomically.

An embeddings file holds ``embeddings`` (N, d) float and ``labels`` (N,) or (N, L) int (column 0 the
finest level): what ``rankopt embed`` writes and ``rankopt evaluate`` reads. Every error is an
ordinary exception (FileNotFoundError, ValueError) whose message names the file and the problem.

>>> import tempfile, numpy as np
>>> path = tempfile.mkdtemp() + "/e.npz"
>>> write_embeddings(path, np.eye(3, dtype=np.float32), np.array([0, 0, 1]))
>>> emb, labels = read_embeddings(path)
>>> emb.shape, labels.tolist()
((3, 3), [0, 0, 1])
"""

from __future__ import annotations

import tempfile
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from rankopt.atomic import atomic_write

__all__ = [
    "read_npz",
    "read_embeddings",
    "read_embedding_rows",
    "write_embeddings",
    "check_writable",
    "read_example",
    "EXAMPLES",
    "read_model_weights",
    "EMBEDDING_KEYS",
]

EMBEDDING_KEYS = "'embeddings' (N, d) float and 'labels' (N,) or (N, L) int"
EXAMPLES = {"digits": "scikit-learn's 8×8 digits (1,797 images; raw pixels as embeddings; labels [digit, parity])"}


def _check_archive(p: Path, what: str, expected: str) -> None:
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {p} is a directory; expected an .npz file")
    if p.stat().st_size == 0:
        raise ValueError(f"{what} {p} is empty; expected an .npz with {expected}")
    if not zipfile.is_zipfile(p):
        raise ValueError(
            f"{what} {p} is not a readable .npz file (an .npz is a zip archive of .npy arrays, as "
            f"numpy.savez writes; expected {expected})"
        )


def read_npz(
    path: str | Path, what: str, required: tuple[str, ...], optional: tuple[str, ...] | None = (), expected: str = ""
) -> dict[str, np.ndarray]:
    """The arrays of an npz file: every ``required`` key must be there; ``optional=None`` allows any
    other key, else only those listed."""
    p = Path(path)
    expected = expected or ", ".join(repr(k) for k in required)
    _check_archive(p, what, expected)
    try:
        with np.load(p, allow_pickle=False) as data:
            files = list(data.files)
            missing = [k for k in required if k not in files]
            if missing:
                raise ValueError(
                    f"{what} {p} has no array {', '.join(repr(m) for m in missing)}; "
                    f"found {files or 'no arrays'}; expected {expected}"
                )
            if optional is not None:
                unknown = sorted(set(files) - set(required) - set(optional))
                if unknown:
                    raise ValueError(f"{what} {p}: unknown array(s) {unknown}; expected {expected}")
            return {k: data[k] for k in files}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{what} {p} is not a readable .npz file ({err})") from None
    except ValueError as err:
        if str(err).startswith(f"{what} {p}"):
            raise
        raise ValueError(f"{what} {p} is not a readable .npz file ({err})") from None


def read_embeddings(path: str | Path, what: str = "file") -> tuple[np.ndarray, np.ndarray]:
    """``embeddings`` (N, d) and ``labels`` (N,) or (N, L) of an embeddings file (other arrays ignored)."""
    arrays = read_npz(path, what, ("embeddings", "labels"), optional=None, expected=EMBEDDING_KEYS)
    return arrays["embeddings"], arrays["labels"]


def read_embedding_rows(path: str | Path, world: int, rank: int, what: str = "file") -> tuple[np.ndarray, np.ndarray]:
    """Process ``rank`` of ``world``'s contiguous shard of the rows of ``embeddings`` and ``labels``,
    reading only those rows (the arrays are read from the archive by offset, never whole)."""
    from rankopt.collectives import shard_bounds

    p = Path(path)
    _check_archive(p, what, EMBEDDING_KEYS)
    out, shapes = [], []
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
            missing = [k for k in ("embeddings", "labels") if f"{k}.npy" not in names]
            if missing:
                raise ValueError(
                    f"{what} {p} has no array {', '.join(repr(m) for m in missing)}; expected {EMBEDDING_KEYS}"
                )
            for key in ("embeddings", "labels"):
                with archive.open(f"{key}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, fortran, dtype = header(f)
                    if fortran or dtype.hasobject or not shape:
                        raise ValueError(f"{what} {p}: '{key}' must be a C-ordered numeric array")
                    shapes.append(shape)
                    start, stop = shard_bounds(shape[0], world, rank)
                    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
                    f.seek(start * row, 1)
                    rows = np.empty((stop - start, *shape[1:]), dtype=dtype)
                    if f.readinto(memoryview(rows).cast("B")) != rows.nbytes:
                        raise ValueError(f"{what} {p}: '{key}' is shorter than its header says")
                    out.append(rows)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{what} {p} is not a readable .npz file ({err})") from None
    if shapes[0][0] != shapes[1][0]:
        raise ValueError(f"{what} {p}: {shapes[0][0]} embeddings but {shapes[1][0]} labels")
    return out[0], out[1]


def write_embeddings(path: str | Path, embeddings: np.ndarray, labels: np.ndarray, **extra: np.ndarray) -> None:
    """An embeddings file (atomically: never half-written), with any ``extra`` arrays."""
    atomic_write(path, lambda f: np.savez(f, embeddings=embeddings, labels=labels, **extra))


def check_writable(path: str | Path, what: str) -> Path:
    """Create the folder of an output path and make sure it can be written, before any work."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".rankopt-check-"):
            pass
    except OSError as err:
        raise PermissionError(f"{what} {path}: cannot write to {path.parent} ({err.strerror or err})") from None
    return path


def read_example(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled example as (embeddings float32, labels): ``digits``."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; available: {', '.join(EXAMPLES)}")
    with resources.as_file(resources.files("rankopt") / "examples" / f"{name}.npz") as p:
        emb, labels = read_embeddings(p, "example")
    return emb.astype(np.float32), labels


def read_model_weights(checkpoint: str | Path, prefix: str = "model."):
    """The weights under ``prefix`` of a run's Lightning checkpoint (safe load: tensors only), prefix
    stripped; a truncated, empty or foreign file is a ValueError naming it."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {checkpoint} cannot be read: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    return {k[len(prefix) :]: v for k, v in state.get("state_dict", {}).items() if k.startswith(prefix)}
