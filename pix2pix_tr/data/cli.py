"""Shared plumbing of the ``datasets/*.py`` scripts: bad input -> one sentence on stderr, exit status 2."""

from __future__ import annotations

from typing import Callable

from pix2pix_tr.cli import non_negative_int
from pix2pix_tr.cli import run_cli as _run_cli
from pix2pix_tr.data.errors import DatasetError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; a :class:`DatasetError` prints ``error: <message>`` (no traceback) and returns 2,
    a full disk prints where and returns 3 (:func:`pix2pix_tr.cli.run_cli`)."""
    return _run_cli(main, argv, user_errors=DatasetError)


def synthetic_main(argv: list[str] | None = None) -> int:
    """``python datasets/make_synthetic_cityscapes.py --out DIR --train N --val M --seed S [--width W --height H]``"""
    import argparse

    from pix2pix_tr.data.synthetic_city import make_synthetic_cityscapes

    parser = argparse.ArgumentParser(
        prog="make_synthetic_cityscapes.py",
        description="Write a procedural street-scene city in the Cityscapes layout (leftImg8bit/, gtFine/ with "
                    "labelIds and color PNGs), deterministic for a seed. Prepare it for pix2pix with "
                    "datasets/prepare_cityscapes_dataset.py.")
    parser.add_argument("--out", required=True, help="output folder (leftImg8bit/ and gtFine/ go inside)")
    parser.add_argument("--train", type=non_negative_int, default=100, help="frames in the train split (default 100)")
    parser.add_argument("--val", type=non_negative_int, default=20, help="frames in the val split (default 20)")
    parser.add_argument("--test", type=non_negative_int, default=0, help="frames in the test split (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same city (default 0)")
    parser.add_argument("--width", type=non_negative_int, default=512, help="image width (default 512)")
    parser.add_argument("--height", type=non_negative_int, default=256, help="image height (default 256)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace splits of --out made with other settings (their old images are removed first); "
                             "without it such a rerun is refused")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args(argv)
    if args.width < 16 or args.height < 8:
        parser.error(f"--width/--height must be at least 16x8, got {args.width}x{args.height}")
    if args.train + args.val + args.test == 0:
        parser.error("nothing to do: --train, --val and --test are all 0")
    info = make_synthetic_cityscapes(args.out, args.train, args.val, seed=args.seed, width=args.width,
                                     height=args.height, n_test=args.test, progress=not args.quiet,
                                     overwrite=args.overwrite)
    print(f"wrote {len(info['train'])} train, {len(info['val'])} val, {len(info['test'])} test frames "
          f"({args.width}x{args.height}) to {info['root']} in {info['seconds']:.1f} s "
          f"({info['cpu_seconds']:.1f} s CPU)")
    return 0


def prepare_main(argv: list[str] | None = None) -> int:
    """``python datasets/prepare_cityscapes_dataset.py --gtFine_dir G --leftImg8bit_dir L --output_dir O``"""
    import argparse

    from pix2pix_tr.data.cityscapes import prepare_cityscapes

    parser = argparse.ArgumentParser(
        prog="prepare_cityscapes_dataset.py",
        description="Turn Cityscapes (real or synthetic) into pix2pix A|B pairs: photo left (A), colour label right "
                    "(B), SIZE x SIZE each, named {city}_{seq}_{frame}.png in OUTPUT_DIR/train and OUTPUT_DIR/val. "
                    "Train labels->photo with --direction BtoA.")
    parser.add_argument("--gtFine_dir", required=True, help="the unpacked gtFine folder (with train/ and val/)")
    parser.add_argument("--leftImg8bit_dir", required=True, help="the unpacked leftImg8bit folder")
    parser.add_argument("--output_dir", required=True, help="where train/ and val/ A|B images are written")
    parser.add_argument("--size", type=non_negative_int, default=256, help="side of each square half (default 256)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val", "test"],
                        help="splits to convert (default: train val)")
    parser.add_argument("--label_resize", choices=["nearest", "bicubic"], default="nearest",
                        help="label resampling: nearest keeps exact palette colours (default); bicubic as the "
                             "original pix2pix script")
    parser.add_argument("--format", dest="image_format", choices=["png", "jpg"], default="png",
                        help="output format (default png; the original wrote jpg)")
    parser.add_argument("--original", action="store_true",
                        help="reproduce the original pix2pix preparation: bicubic labels and JPEG output "
                             "(--label_resize bicubic --format jpg)")
    parser.add_argument("--limit", type=non_negative_int, default=None,
                        help="convert only the first N frames per split")
    parser.add_argument("--workers", type=non_negative_int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace splits of --output_dir made with other settings (their old images are removed "
                             "first); without it such a rerun is refused, and a rerun with the same settings "
                             "continues where an interrupted one stopped")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args(argv)
    if args.workers == 0:
        parser.error("--workers must be >= 1")
    if args.limit == 0:
        parser.error("--limit must be >= 1")
    if args.original:
        args.label_resize, args.image_format = "bicubic", "jpg"
    written = prepare_cityscapes(args.gtFine_dir, args.leftImg8bit_dir, args.output_dir, args.size,
                                 splits=args.splits, label_resize=args.label_resize, image_format=args.image_format,
                                 limit=args.limit, workers=args.workers, progress=not args.quiet,
                                 overwrite=args.overwrite)
    counts = ", ".join(f"{len(v)} {k}" for k, v in written.items())
    print(f"wrote {counts} A|B pairs ({2 * args.size}x{args.size}, photo left, label right) to {args.output_dir}; "
          "train labels->photo with --direction BtoA")
    return 0


def combine_main(argv: list[str] | None = None) -> int:
    """``python datasets/combine_A_and_B.py --fold_A A --fold_B B --fold_AB AB [--size N]``"""
    import argparse

    from pix2pix_tr.data.combine import combine_A_and_B

    parser = argparse.ArgumentParser(
        prog="combine_A_and_B.py",
        description="Combine paired folders A/ and B/ (same relative file names, e.g. train/0001.jpg in both) into "
                    "side-by-side A|B images for pix2pix, keeping subfolders such as train/ and val/.")
    parser.add_argument("--fold_A", required=True, help="folder of A images (left half)")
    parser.add_argument("--fold_B", required=True, help="folder of B images (right half), same names as --fold_A")
    parser.add_argument("--fold_AB", required=True, help="output folder")
    parser.add_argument("--size", type=non_negative_int, default=None,
                        help="resize both halves to SIZE x SIZE (default: keep; A and B must then match)")
    parser.add_argument("--b_resize", choices=["bicubic", "nearest"], default="bicubic",
                        help="resampling for B when --size is given (nearest for label maps)")
    parser.add_argument("--format", dest="image_format", choices=["png", "jpg"], default="png",
                        help="output format (default png)")
    parser.add_argument("--limit", type=non_negative_int, default=None, help="combine only the first N pairs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what an earlier run with other settings wrote into --fold_AB (its old images "
                             "are removed first); without it such a rerun is refused")
    parser.add_argument("--b_label_ids", action="store_true",
                        help="B holds one-channel label-id maps (8- or 16-bit): copy the ids as they are, never "
                             "scaled, and resize nearest-neighbour")
    args = parser.parse_args(argv)
    if args.size == 0 or args.limit == 0:
        parser.error("--size and --limit must be >= 1")
    written = combine_A_and_B(args.fold_A, args.fold_B, args.fold_AB, size=args.size, b_resize=args.b_resize,
                              image_format=args.image_format, limit=args.limit, b_label_ids=args.b_label_ids,
                              overwrite=args.overwrite)
    print(f"wrote {len(written)} A|B images to {args.fold_AB}")
    return 0


def synthetic_command() -> int:
    """The installed command ``pix2pix-tr-synthetic-city`` (= ``python datasets/make_synthetic_cityscapes.py``)."""
    return run_cli(synthetic_main)


def prepare_command() -> int:
    """The installed command ``pix2pix-tr-prepare-cityscapes`` (= ``python datasets/prepare_cityscapes_dataset.py``)."""
    return run_cli(prepare_main)
