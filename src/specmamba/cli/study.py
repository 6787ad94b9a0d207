"""``specmamba study``: every model of a study file x every seed, scored, audited and compared."""

from __future__ import annotations

import argparse

from ..study import run_study, shipped_studies


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="train, score and spectrally audit many models x seeds on one dataset; leaderboard and report",
        description="Run a study file: train every (model, seed), score each on the validation split and "
        "the external sets, measure speed, audit all checkpoints (centred and raw maps), and write "
        "leaderboard.csv/.md, pairwise.csv (Wilcoxon, corrected), families.csv, correlations.csv and "
        "report.html to --out. Killed at any point, the same command continues where it stopped. "
        f"Shipped study files: {', '.join(shipped_studies())}.",
    )
    parser.add_argument("--config", required=True, help="study file (YAML), or the name of a shipped one")
    parser.add_argument("--out", required=True, help="study folder (created; the same folder resumes)")
    parser.add_argument("--data", help="replace the study file's data folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="do only the runs at positions K-1 mod N (one of N processes sharing the study folder); "
        "then run once more without --shard to audit and write the tables",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_study(
        args.config, args.out, data=args.data, device=args.device, shard=args.shard, progress=args.progress
    )
    if "leaderboard" not in result:
        print(
            f"shard {result['shard']}: {result['runs']} run(s) done in {result['seconds']} s; run without "
            "--shard to write the tables"
        )
        return 0
    print(result["markdown"])
    print(
        f"{result['n_significant']} significant paired difference(s); tables and report.html in "
        f"{result['out']} ({result['seconds']} s)"
    )
    return 0
