"""``specmamba audit``: the spectral audit of one or more checkpoints on a labelled split."""

from __future__ import annotations

import argparse
import shlex

from ..spectral.audit import AuditSettings, run_audit
from ..spectral.shift import DEFAULT_SHIFTS, DIRECTIONS, MODES
from . import add_inference_flags, comma_list, inference_kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="spectral audit (AVR, bands, spectra, BF1, correlations, shift consistency) of checkpoints",
        description="Measure the encoder stages of trained checkpoints in the Fourier domain, relate the "
        "measures to segmentation quality and test shift consistency; writes CSV tables, figures and "
        "report.html to --out. Give several checkpoints of one architecture (training seeds) for mean "
        "+- std over them.",
    )
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="a run's checkpoint_best.pt (repeat the flag)"
    )
    parser.add_argument("--data", required=True, help="folder of image/mask pairs")
    parser.add_argument("--split", default="val", help="train, val, test or all (default val)")
    parser.add_argument("--out", required=True, help="output folder for tables, figures and report.html")
    add_inference_flags(parser)
    parser.add_argument(
        "--shifts",
        type=comma_list(float, nonempty=True),
        default=DEFAULT_SHIFTS,
        help="shift amounts in px, comma-separated (default 1,2,3,4,5,0.25,0.5)",
    )
    parser.add_argument(
        "--shift-directions",
        type=comma_list(str, tuple(DIRECTIONS)),
        default=tuple(DIRECTIONS),
        help="horizontal,vertical,diagonal (default all)",
    )
    parser.add_argument(
        "--shift-modes", type=comma_list(str, MODES), default=MODES, help="cyclic,reflect (default both)"
    )
    parser.add_argument(
        "--shift-images", type=int, help="run the shift test on the first N images only (0 = skip it)"
    )
    parser.add_argument("--max-images", type=int, help="audit the first N images of the split only")
    parser.add_argument("--threshold", type=float, default=0.5, help="AVR frequency threshold (default 0.5)")
    parser.add_argument("--tolerance", type=float, default=2.0, help="BF1 tolerance in px (default 2)")
    parser.add_argument(
        "--no-center",
        dest="center",
        action="store_false",
        help="measure AVR, bands and spectra of the raw maps instead of the mean-centred ones: each "
        "map's mean (its DC term, for the input stage the image brightness) then counts as low-frequency "
        "energy. For testing the claim that an uncentred FFT makes AVR track brightness; not the measure "
        "to report",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (0 = no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the audit files in an existing --out"
    )
    parser.add_argument("--allow-unpaired", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = AuditSettings(
        threshold=args.threshold,
        tolerance=args.tolerance,
        shifts=args.shifts,
        directions=args.shift_directions,
        modes=args.shift_modes,
        shift_images=args.shift_images,
        max_images=args.max_images,
        n_boot=args.bootstrap,
        seed=args.seed,
        center=args.center,
    )
    summary = run_audit(
        args.checkpoint,
        args.data,
        args.out,
        split=args.split,
        settings=settings,
        overwrite=args.overwrite,
        allow_unpaired=args.allow_unpaired,
        command=shlex.join(["specmamba", *args.argv]),
        **inference_kwargs(args),
    )
    print(
        f"audited {len(summary['checkpoints'])} checkpoint(s) on {summary['n_images']} images "
        f"of split {args.split!r}"
    )
    for arch, values in summary["architectures"].items():
        print(
            f"  {arch:<16} Dice {values['dice']['mean']:.4f}  BF1 {values['bf1']['mean']:.4f}  "
            f"mean AVR {_fmt(values.get('avr_mean_over_stages'))}"
        )
    for note in summary["notes"]:
        print(f"  note: {note}")
    print(f"tables, figures and report.html written to {summary['out']} ({summary['seconds']} s)")
    return 0


def _fmt(value: float | None) -> str:
    return "n/m" if value is None else f"{value:.4f}"
