"""``rankopt report PATH [PATH ...]``: one self-contained HTML page of a run or an embeddings file, or
a comparison of runs tested on the same data."""

from __future__ import annotations

import argparse
import json

from rankopt.io import check_writable

__all__ = ["register", "run"]


def register(groups) -> None:
    rp = groups.parser_of(("report",), "").add_parser(
        "report",
        help="one self-contained HTML page of a run folder or embeddings .npz, or a comparison of runs",
        description=(
            "With one PATH (a run folder of rankopt train, recsys train, pretrain or prompt, or an embeddings "
            ".npz): the "
            "metrics with 95% bootstrap intervals, per-query AP, precision-recall and hit@k curves, a retrieval "
            "gallery (sampled and worst queries), training curves; for recommendation the metrics at every "
            "cut-off and NDCG by user activity. With several run folders tested on the same data: the runs "
            "side by side with paired bootstrap intervals and randomisation-test p-values of every difference "
            "(runs on different data are refused). The page makes no network request and opens from disk."
        ),
    )
    rp.add_argument("paths", nargs="+", metavar="PATH", help="run folder(s) or one embeddings .npz")
    rp.add_argument("-o", "--output", help="the HTML file (default report.html, or compare.html for several runs)")
    rp.add_argument("--gallery", metavar="G.npz", help="a separate gallery for an embeddings .npz")
    rp.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap, the tests and the sampled queries (default 0)"
    )
    rp.add_argument("--json", action="store_true", help="last line: the numbers of the page as one JSON object")
    rp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rankopt.report import compare, report
    except ImportError as err:
        raise ImportError(
            f"rankopt report needs matplotlib and Jinja2: pip install 'rankopt[report]' ({err})"
        ) from None
    output = args.output or ("compare.html" if len(args.paths) > 1 else "report.html")
    check_writable(output, "-o")
    if len(args.paths) > 1:
        if args.gallery:
            raise ValueError("--gallery goes with one embeddings file, not a comparison")
        _, summary = compare(args.paths, output=output, seed=args.seed)
    else:
        from rankopt.progress import progress_bar

        def progress(label, unit):
            return progress_bar(label, enabled=None if not args.json else False, unit=unit)

        _, summary = report(args.paths[0], gallery=args.gallery, output=output, seed=args.seed, progress=progress)
    print(json.dumps({**summary, "output": str(output)}) if args.json else f"wrote {output}")
    return 0
