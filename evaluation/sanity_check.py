"""Does a scorer rank photo quality? Score the real val photos and three degraded versions of them.

A scorer is only useful for comparing generators if worse photos get lower FCN-scores. This writes four fake
"results" folders from the real val photos, resized to the scorer's size (as a generator's output would be):

* ``real``: unchanged (the GT row);
* ``blur``: Gaussian blur, radius 2 pixels at 256 (scaled with the size);
* ``lowres``: down to 1/8 of the size and back up (bilinear);
* ``noise``: uniform noise, no content at all (should land near the majority-class baseline);

scores each with :func:`evaluation.fcn_score.fcn_score` and prints the table. Expect the rows in that order,
each clearly below the previous. Command line::

    python -m evaluation.sanity_check --cityscapes_dir DIR --scorer scorer.pth --output_dir sanity \\
        [--protocol pix2pix|256] [--device auto]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from evaluation.common import (EvaluationError, check_output_apart, check_output_dir_usable, list_label_frames,
                               load_rgb, photo_path, require_cityscapes_split, resolve_device, run_cli)
from evaluation.compare_runs import compare_table
from evaluation.fcn_score import fcn_score
from evaluation.protocols import PROTOCOLS
from evaluation.scorer import load_scorer
from evaluation.scoring import check_score_options
from pix2pix_tr.io import atomic_save_image, atomic_write_text

VARIANTS = ("real", "blur", "lowres", "noise")


def _degrade(name: str, photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = photo.size[0]
    if name == "blur":
        return photo.filter(ImageFilter.GaussianBlur(2 * size / 256))
    if name == "lowres":
        small = max(2, size // 8)
        return photo.resize((small, small), Image.BILINEAR).resize(photo.size, Image.BILINEAR)
    if name == "noise":
        return Image.fromarray(rng.integers(0, 256, (photo.size[1], photo.size[0], 3), dtype=np.uint8))
    return photo


def sanity_check(cityscapes_dir: str | Path, scorer: str | Path, output_dir: str | Path, *,
                 protocol: str | None = None, split: str = "val", device: str | None = "auto", batch_size: int = 4,
                 seed: int = 0, progress: bool = True) -> dict:
    """Write ``output_dir/{variant}/`` fake results and FCN-score reports, and ``output_dir/table.md``.

    ``output_dir`` must be apart from the inputs and from other tools' outputs (checked before anything is
    written); rerunning into it replaces the earlier check cleanly (its photos and reports).

    Returns ``{"table": markdown, "warnings": [...], "scores": {variant: {three scores}}}``.
    """
    check_score_options(batch_size=batch_size)
    if protocol is not None and protocol not in PROTOCOLS:
        raise EvaluationError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    cityscapes_dir = require_cityscapes_split(cityscapes_dir, split)
    out = Path(output_dir)
    check_output_apart(out, flag="--output_dir", input_dirs={"--cityscapes_dir": cityscapes_dir},
                       input_files={"--scorer": scorer})
    check_output_dir_usable(out, flag="--output_dir")
    loaded = load_scorer(scorer, resolve_device(device))
    size = loaded.image_size
    frames = sorted(list_label_frames(cityscapes_dir, split))
    rng = np.random.default_rng(seed)
    scores, report_dirs = {}, []
    for name in VARIANTS:
        images = out / "photos" / name / "images"
        written = set()
        for frame in frames:
            photo = load_rgb(photo_path(cityscapes_dir, split, frame)).resize((size, size), Image.BICUBIC)
            written.add(f"{frame}_fake_B.png")
            atomic_save_image(_degrade(name, photo, rng), images / f"{frame}_fake_B.png")
        for stale in images.glob("*_fake_B.png"):  # photos of an earlier check (another split or city)
            if stale.name not in written:
                stale.unlink()
        for orphan in images.glob(".*_fake_B.png.*.tmp"):  # temporary files of an earlier, killed check
            orphan.unlink(missing_ok=True)
        report = out / name
        result = fcn_score(images.parent, cityscapes_dir, loaded, report, protocol=protocol, split=split,
                           batch_size=batch_size, label=name, progress=progress)
        scores[name] = result["scores"]
        report_dirs.append(report)
    table, warnings = compare_table(report_dirs)
    atomic_write_text(out / "table.md", table + "".join(f"\nWarning: {w}" for w in warnings))
    return {"table": table, "warnings": warnings, "scores": scores}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.sanity_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--cityscapes_dir", required=True)
    p.add_argument("--scorer", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="default: the scorer's own (drn for DRN-D-105, else pix2pix)")
    p.add_argument("--split", default="val")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--no_progress", action="store_true")
    args = p.parse_args(argv)
    result = sanity_check(args.cityscapes_dir, args.scorer, args.output_dir, protocol=args.protocol,
                          split=args.split, device=args.device, batch_size=args.batch_size,
                          progress=not args.no_progress)
    print(result["table"], end="")
    pixel = [result["scores"][v]["per_pixel_acc"] for v in VARIANTS]
    verdict = "ranks them in order" if all(a > b for a, b in zip(pixel, pixel[1:])) else "does NOT rank them in order"
    print(f"\nper-pixel accuracy real > blur > lowres > noise: the scorer {verdict}")
    return 0


def command() -> int:
    """``python -m evaluation.sanity_check``: :func:`main` with our exits (one sentence and status 2 on bad input)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(command())
