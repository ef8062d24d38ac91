"""``rankopt embed RUN -o OUT.npz``: the embeddings of a run's test items (or another part of it, or a
whole dataset split) with the run's selected checkpoint — the file ``rankopt evaluate`` reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankopt.io import check_writable, write_embeddings

__all__ = ["register", "run"]

PARTS = {"test": "test", "gallery": "test_gallery", "valid": "valid", "train": "train"}


def register(groups) -> None:
    em = groups.parser_of(("embed",), "").add_parser(
        "embed",
        help="write the embeddings of a run's test items (the npz rankopt evaluate reads)",
        description="Embed, with a run's selected checkpoint (or the checkpoint given), exactly the items the run "
        "evaluated: rankopt evaluate on the output reproduces the run's test metrics (with --part gallery "
        "written to a second file and given as --gallery for a query/gallery test). --split embeds a whole "
        "split of the dataset instead; --dataset and --data-dir another dataset.",
    )
    em.add_argument("run_dir", metavar="RUN_DIR|CHECKPOINT", help="a run folder, or RUN_DIR/checkpoints/<name>.ckpt")
    em.add_argument(
        "--part",
        choices=sorted(PARTS),
        default="test",
        help="which of the run's evaluated parts (default test: its test queries)",
    )
    em.add_argument("--split", help="a whole dataset split instead of the run's items (e.g. test, query, gallery)")
    em.add_argument("--dataset", help="another dataset (by name; with --split)")
    em.add_argument("--data-dir", help="the dataset folder (default: the run's)")
    em.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="where to write embeddings and labels")
    em.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rankopt.train.run import embed_dataset, load_model, load_split, run_splits
    except ImportError as err:
        raise ImportError(f"embedding needs the train extra: pip install 'rankopt[train]' ({err})") from None
    from rankopt.runs import RunFolder

    out = check_writable(args.output, "-o")
    target = Path(args.run_dir)
    checkpoint = None
    if target.suffix == ".ckpt" or target.is_file():
        if not target.is_file():
            raise FileNotFoundError(f"checkpoint {target} does not exist")
        checkpoint, target = target, target.parent.parent
    folder = RunFolder(target)
    cfg = folder.config("images")
    if args.data_dir is not None:
        cfg.data.root = args.data_dir
    if args.dataset is not None:
        if args.split is None:
            raise ValueError("--dataset embeds another dataset: name its split with --split")
        cfg.data.name = args.dataset
    if checkpoint is None:
        checkpoint = folder.selected_checkpoint()
    model = load_model(folder, cfg, checkpoint)
    if args.split is not None:
        dataset = load_split(cfg, args.split, train=False)
    else:
        splits, _ = run_splits(folder, cfg)
        dataset = dict(
            zip(
                ("train", "valid", "test", "test_gallery"),
                (splits.train, splits.valid and splits.valid.queries, splits.test.queries, splits.test.gallery),
            )
        ).get(PARTS[args.part])
        if dataset is None:
            raise ValueError(
                f"{folder.path} has no {args.part} part (its test is "
                f"{splits.test.mode}{'' if splits.valid else ', without validation'})"
            )
    emb, labels = embed_dataset(model, dataset, num_workers=cfg.data.num_workers)
    write_embeddings(out, emb, labels)
    print(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} to {out}")
    return 0
