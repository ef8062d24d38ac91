"""``rankopt evaluate FILE.npz``: exact, tie-aware ranking metrics of saved embeddings (one process,
or its gallery sharded over processes under torchrun)."""

from __future__ import annotations

import argparse
import json
import os

from rankopt.cli.tables import metric_table
from rankopt.io import EXAMPLES, check_writable, read_embedding_rows, read_embeddings, read_example
from rankopt.metrics.evaluate import NO_POSITIVE, aggregate, evaluate_per_query
from rankopt.metrics.ranking import TIES
from rankopt.progress import progress_bar
from rankopt.search import BACKENDS, SIMILARITIES

__all__ = ["register", "run", "metric_list"]


def register(groups) -> None:
    ev = groups.parser_of(("evaluate",), "").add_parser(
        "evaluate",
        help="exact ranking metrics of saved embeddings",
        description=(
            "Compute exact, tie-aware ranking metrics. FILE.npz holds 'embeddings' (N, d) float and "
            "'labels' (N,) or (N, L) int, column 0 the finest level. Without --gallery every item is a "
            "query ranked against all the others (itself removed by index)."
        ),
    )
    ev.add_argument("file", nargs="?", metavar="FILE.npz", help="queries (and gallery, without --gallery)")
    ev.add_argument(
        "--example",
        choices=sorted(EXAMPLES),
        help="evaluate a bundled example instead of FILE: " + "; ".join(f"{k}: {v}" for k, v in EXAMPLES.items()),
    )
    ev.add_argument("--gallery", metavar="G.npz", help="a separate gallery (In-Shop, DyML style); same keys as FILE")
    ev.add_argument(
        "--metrics",
        help="comma-separated: ap, map@r, r-precision, hit@K (alias r@K, hr@K: >= 1 relevant in the top K), recall@K "
        "(relevant in top K / all relevant), p@K (precision@K), mrr, mrr@K, map@K, ndcg, ndcg@K, hap, asi; "
        "pytorch-metric-learning's names too (precision_at_1, mean_average_precision_at_r ...); binary metrics take "
        "/levelN "
        "(relevant = shares >= N label columns). Default: hit@1,hit@10,map@r,r-precision,ap,mrr,ndcg "
        "(+ hap, asi, ap/levelN on hierarchical labels)",
    )
    ev.add_argument(
        "--ties",
        choices=TIES,
        default="expected",
        help="expected (default): exact expectation over random orders of tied scores; pessimistic: relevant "
        "items last within a tie; optimistic: first",
    )
    ev.add_argument(
        "--no-positive",
        choices=NO_POSITIVE,
        default="exclude",
        help="queries without a relevant item: exclude from the mean and count them (default), score zero, or fail",
    )
    ev.add_argument(
        "--similarity",
        choices=SIMILARITIES,
        default="cosine",
        help="cosine (default): dot of L2-normalised vectors; dot: raw dot product; euclidean: -squared distance",
    )
    ev.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1 ...")
    ev.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="search backend (default torch); faiss serves top-k metrics only",
    )
    ev.add_argument(
        "--memory-budget",
        type=float,
        default=1024,
        metavar="MiB",
        help="memory one block of queries may use (default 1024)",
    )
    ev.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: every metric, n_queries, n_excluded, similarity and ties",
    )
    ev.add_argument("--per-query", metavar="OUT.csv", help="write one row per query (index, each metric)")
    ev.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: each process reads its shard of the gallery rows and the processes "
        "evaluate exactly together (gloo on CPU, NCCL with --device cuda); the output equals one process's",
    )
    ev.set_defaults(func=run)


def metric_list(text: str | None) -> list[str] | None:
    """A comma-separated list as the commands take it (blanks around names dropped)."""
    return None if text is None else [m.strip() for m in text.split(",") if m.strip()]


def run(args: argparse.Namespace) -> int:
    if args.distributed:
        return _distributed(args)
    if args.example and args.file:
        raise ValueError("give either FILE or --example, not both")
    if args.example:
        emb, labels = read_example(args.example)
        source = f"example {args.example}"
    elif args.file:
        emb, labels = read_embeddings(args.file)
        source = args.file
    else:
        raise ValueError("nothing to evaluate: give FILE.npz or --example digits")
    gallery = gallery_labels = None
    if args.gallery:
        gallery, gallery_labels = read_embeddings(args.gallery, "gallery file")
    if args.per_query:
        check_writable(args.per_query, "--per-query")  # before the work, not after it
    with progress_bar("ranking queries") as bar:
        result = evaluate_per_query(
            emb,
            labels,
            gallery,
            gallery_labels,
            metrics=metric_list(args.metrics),
            ties=args.ties,
            similarity=args.similarity,
            device=args.device,
            backend=args.backend,
            memory_budget=int(args.memory_budget * (1 << 20)),
            progress=bar,
        )
    summary = aggregate(result, args.no_positive)
    if args.per_query:
        result.write_csv(args.per_query)
    _print(args, summary, source, result.n_ranked)
    return 0


def _print(args: argparse.Namespace, summary: dict, source: str, n_ranked: int) -> None:
    if args.json:
        print(json.dumps({**summary, "similarity": args.similarity, "ties": args.ties}))
    else:
        print(metric_table(summary, source, n_ranked, args.similarity, args.ties, args.no_positive))


def _distributed(args: argparse.Namespace) -> int:
    """One process of ``torchrun ... -m rankopt evaluate FILE --distributed``: reads its shard of the
    gallery rows (and of the queries), evaluates exactly with the others, rank 0 prints."""
    import torch
    import torch.distributed as dist

    from rankopt.metrics.distributed import evaluate_distributed

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "--distributed runs under torchrun: torchrun --nproc-per-node N -m rankopt evaluate FILE --distributed"
        )
    if args.example or not args.file:
        raise ValueError("--distributed evaluates a FILE.npz (each process reads its own rows of it)")
    if args.backend != "torch":
        raise ValueError("--distributed ranks with the torch backend only")
    device = args.device or "cpu"
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        world, rank = dist.get_world_size(), dist.get_rank()
        if args.per_query and rank == 0:
            check_writable(args.per_query, "--per-query")
        emb, labels = read_embedding_rows(args.file, world, rank)
        queries = query_labels = None
        if args.gallery:
            queries, query_labels = emb, labels
            emb, labels = read_embedding_rows(args.gallery, world, rank, "gallery file")
        with progress_bar("ranking queries", enabled=None if rank == 0 else False) as bar:
            summary, result = evaluate_distributed(
                emb,
                labels,
                queries,
                query_labels,
                metrics=metric_list(args.metrics),
                ties=args.ties,
                no_positive=args.no_positive,
                similarity=args.similarity,
                device=device,
                memory_budget=int(args.memory_budget * (1 << 20)),
                per_query=True,
                progress=bar,
            )
        if rank == 0:
            if args.per_query:
                result.write_csv(args.per_query)
            _print(args, summary, f"{args.file} ({world} processes)", result.n_ranked)
    finally:
        dist.destroy_process_group()
    return 0
