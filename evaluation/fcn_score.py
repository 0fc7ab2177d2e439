"""The FCN-score of synthesized Cityscapes photos (pix2pix labels->photo), as in the pix2pix and TRAdam papers.

A scorer network (see :mod:`evaluation.scorer`, trained by :mod:`evaluation.train_scorer`) labels every
synthesized photo ``{result_dir}/images/{city}_{seq}_{frame}_fake_B.png`` (what ``test.py`` writes); the labels
are compared with ``{cityscapes_dir}/gtFine/val/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png``, the maps the
photos were synthesized from. If the generator painted a convincing "car" where the label map says car, the
scorer finds a car there. The three numbers (per-pixel accuracy, per-class accuracy, class IoU; see
:mod:`evaluation.metrics`) are then read off one confusion matrix summed over all frames.

The scorer (``--scorer``) is a ``train_scorer`` checkpoint, the pix2pix authors' ``fcn-8s-cityscapes.caffemodel``
or fyu/drn's ``drn-d-105_ms_cityscapes.pth`` (:mod:`evaluation.scorer`). Protocols (``--protocol``; details in
:mod:`evaluation.protocols`):

* ``pix2pix`` (default, the original evaluator): the photo is upsampled (bilinear) to the label map's size
  (2048x1024 for real Cityscapes), labelled there, and compared at full resolution. With the FCN-8s: BGR minus
  the pix2pix mean, argmax over its 20 channels.
* ``256``: the photo is resized to ``eval_size`` x ``eval_size`` (default: the scorer's training size, 256 in
  the paper's recipe; usually a no-op for pix2pix output) and compared with the labels resized
  nearest-neighbour to the same size. Cheaper; it is also what ``train_scorer`` reports for its GT row.
* ``drn`` (default for DRN-D-105, GAN Compression's): DRN at the photo's size, log-probabilities resized to the
  label size, argmax; the results add ``miou`` (x100).

The synthesized photos must share one size that a generator run produces (see
:func:`evaluation.protocols.check_synthesized_sizes`; ``--allow_any_size`` overrides with a warning); it is
recorded as ``synthesized_size`` ([width, height]).

``--real`` scores the real val photos instead, resized (bicubic) to the scorer's training size first, like the
generator's output: the "GT" row of the paper's table, the upper bound a synthesized photo can reach.

Every frame on one side must exist on the other: a synthesized frame without ground truth, or a ground-truth
frame without a synthesized photo, is an error that lists them (``--allow_subset`` accepts fewer synthesized
frames than ground-truth ones, e.g. after ``test.py --num_test 50``; the count is recorded).

Outputs in ``output_dir``: ``evaluation_results.json`` (everything, including the confusion matrix, the
scores under each convention for classes absent from the ground truth (``scores_cityscapes``, the default and
cityscapesScripts' exact arithmetic; ``scores_gt_classes``; ``scores_pix2pix``), the majority-class baseline,
per-frame PSNR/SSIM, the protocol, the scorer path and its sha256), ``evaluation_results.txt`` (the original
evaluator's layout) and ``index.html`` with ``samples/`` (photo, predicted labels, ground truth).

The work is split (see docs/evaluation.md, "Module layout"): :mod:`evaluation.frames` finds and matches the frames,
:func:`evaluation.scoring.score` measures (no output folder), :func:`evaluation.summary.summarize` builds the
results dict, :mod:`evaluation.reports` writes the folder; this module is :func:`fcn_score` (all four) and the
command line.

Command line::

    python -m evaluation.fcn_score --result_dir results/NAME/val_latest --cityscapes_dir DIR \\
        --scorer scorer.pth --output_dir eval/NAME [--protocol pix2pix|256|drn] [--real]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from evaluation.common import check_output_apart, check_output_dir_usable, run_cli
from evaluation.frames import FAKE_SUFFIXES, find_fake_frames, match_frames  # noqa: F401  (public names)
from evaluation.protocols import PROTOCOLS
from evaluation.reports import RESULTS_JSON, RESULTS_TXT, fmt3, results_text, write_reports  # noqa: F401
from evaluation.scorer import Scorer
from evaluation.scoring import PSNR_CAP, photo_similarity, score  # noqa: F401  (public names)
from evaluation.summary import summarize


def fcn_score(result_dir: str | Path | None, cityscapes_dir: str | Path, scorer: str | Path | Scorer,
              output_dir: str | Path, *, protocol: str | None = None, real: bool = False, split: str = "val",
              eval_size: int | None = None, real_size: int | None = None, batch_size: int = 4,
              device: str | None = "auto",
              num_workers: int = 0, allow_subset: bool = False, num_samples: int = 8, pix2pix_compat: bool = False,
              label: str | None = None, progress: bool = True, allow_any_size: bool = False) -> dict:
    """Score synthesized (or, with ``real=True``, real) val photos; write the reports; return the results dict.

    :func:`evaluation.scoring.score` (every argument but ``output_dir`` and ``label``, see there), then
    :func:`evaluation.summary.summarize` (``pix2pix_compat``, ``label``: the row's name in ``compare_runs``,
    default ``GT`` for real photos, else the name of the run folder), then
    :func:`evaluation.reports.write_reports` into ``output_dir``. Returns the dict written to
    ``evaluation_results.json``.

    ``output_dir`` must be apart from every input (not one of them, not inside one, not holding one) and must not
    hold another tool's outputs (test.py's ``results.json``, a training run...); that is checked before anything
    is scored or written. An earlier report in ``output_dir`` is replaced as a whole (its sample images too).
    """
    check_output_apart(output_dir, flag="--output_dir",
                       input_dirs={"--result_dir": result_dir, "--cityscapes_dir": cityscapes_dir},
                       input_files={"--scorer": scorer.path if isinstance(scorer, Scorer) else scorer},
                       own=(RESULTS_JSON,))
    check_output_dir_usable(output_dir, flag="--output_dir")
    scored = score(result_dir, cityscapes_dir, scorer, protocol=protocol, real=real, split=split,
                   eval_size=eval_size, real_size=real_size, batch_size=batch_size, device=device,
                   num_workers=num_workers, allow_subset=allow_subset, num_samples=num_samples,
                   allow_any_size=allow_any_size, pix2pix_compat=pix2pix_compat, progress=progress)
    results = summarize(scored, pix2pix_compat=pix2pix_compat, label=label)
    write_reports(results, scored.samples, output_dir)
    return results


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.fcn_score", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", help="folder test.py wrote (results/NAME/val_latest) holding images/*_fake_B.png")
    p.add_argument("--cityscapes_dir", required=True, help="Cityscapes root with gtFine/ (and leftImg8bit/)")
    p.add_argument("--scorer", required=True,
                   help="a checkpoint of python -m evaluation.train_scorer, the pix2pix authors' "
                        "fcn-8s-cityscapes.caffemodel, or fyu/drn's drn-d-105_ms_cityscapes.pth")
    p.add_argument("--output_dir", required=True, help="where the JSON, text and HTML reports go")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="pix2pix: compare at label resolution (the official pix2pix evaluator); 256: compare at "
                        "--eval_size (trained scorers); drn: GAN Compression's DRN-D-105 mIoU. Default: drn for "
                        "DRN-D-105, else pix2pix")
    p.add_argument("--eval_size", type=int, default=None,
                   help="comparison size of --protocol 256 (default: the scorer's training size, 256 normally)")
    p.add_argument("--real", action="store_true", help="score the real val photos (the GT row)")
    p.add_argument("--real_size", type=int, default=None,
                   help="square size real photos are resized to first (default: the scorer's training size)")
    p.add_argument("--split", default="val", help="Cityscapes split of the ground truth (default val)")
    p.add_argument("--allow_subset", action="store_true",
                   help="accept fewer synthesized frames than ground-truth frames (e.g. test.py --num_test)")
    p.add_argument("--pix2pix_compat", action="store_true",
                   help="headline scores with the original pix2pix's arithmetic (classes absent from the ground "
                        "truth count 0 in both means; with the FCN-8s caffemodel also its handling of the 20th "
                        "channel); default: cityscapesScripts' (such a class counts 0 in the IoU mean only when "
                        "it was predicted)")
    p.add_argument("--allow_any_size", action="store_true",
                   help="score synthesized photos of a size no generator run produces (not square, not the label "
                        "aspect, or under 32 pixels), with a warning")
    p.add_argument("--label", default=None, help="row name for compare_runs (default: GT or the run's name)")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes for image loading")
    p.add_argument("--num_samples", type=int, default=8, help="frames shown in the HTML report")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = fcn_score(args.result_dir, args.cityscapes_dir, args.scorer, args.output_dir, protocol=args.protocol,
                        real=args.real, split=args.split, eval_size=args.eval_size, real_size=args.real_size,
                        batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
                        allow_subset=args.allow_subset, num_samples=args.num_samples,
                        pix2pix_compat=args.pix2pix_compat, label=args.label, progress=not args.no_progress,
                        allow_any_size=args.allow_any_size)
    s, b = results["scores"], results["majority_baseline"]
    print(f"{results['label']}: per-pixel acc {fmt3(s['per_pixel_acc'])}, per-class acc "
          f"{fmt3(s['per_class_acc'])}, class IoU {fmt3(s['class_iou'])} ({results['num_frames']} frames, "
          f"protocol {results['protocol']}); majority class: {fmt3(b['per_pixel_acc'])} / "
          f"{fmt3(b['per_class_acc'])} / {fmt3(b['class_iou'])}")
    if results.get("miou") is not None:
        print(f"mIoU (GAN Compression's, x100): {results['miou']:.2f}")
    if results["psnr_mean"] is not None:
        print(f"PSNR {results['psnr_mean']:.2f} dB, SSIM {results['ssim_mean']:.3f}")
    print(f"reports in {Path(args.output_dir) / 'index.html'}")
    return 0


def command() -> int:
    """The installed command ``pix2pix-tr-fcn-score`` (= ``python -m evaluation.fcn_score``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(command())
