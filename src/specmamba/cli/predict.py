"""``specmamba predict``: segment a folder of unlabelled images of any size."""

from __future__ import annotations

import argparse

from ..engine.predictor import predict
from . import add_ensemble_flags, add_inference_flags, ensemble_kwargs, inference_kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="segment a folder of images with a checkpoint")
    add_ensemble_flags(parser)
    parser.add_argument("-i", "--input", required=True, help="folder of images (jpg, png, bmp, tif)")
    parser.add_argument("-o", "--output", required=True, help="folder for the PNG masks")
    parser.add_argument("--overlay", action="store_true", help="also write image + mask overlays")
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write probabilities/<stem>.npz per image: float32 (K, H, W) at the image's size",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace masks (and overlays) already in the output folder"
    )
    parser.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast on CPU as well (faster GEMMs on AVX512-BF16 CPUs, much slower without AVX-512, "
        "where it warns; masks may differ slightly)",
    )
    add_inference_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = predict(
        images=args.input,
        out=args.output,
        overlay=args.overlay,
        save_probabilities=args.save_probabilities,
        overwrite=args.overwrite,
        cpu_bf16=args.cpu_bf16,
        **ensemble_kwargs(args),
        **inference_kwargs(args),
    )
    print(
        f"wrote {result['n_images']} masks to {result['out']}"
        + (f" and overlays to {result['overlays']}" if result["overlays"] else "")
        + (f" and probabilities to {result['probabilities']}" if result["probabilities"] else "")
        + (f" ({result['n_passes']} forward passes per image)" if result["n_passes"] > 1 else "")
    )
    return 0
