"""The paper's FCN-score table from several ``fcn_score`` output folders.

Each OUT folder holds the ``evaluation_results.json`` that :mod:`evaluation.fcn_score` wrote. The table has one
row per folder (named by ``--labels``, or by the label stored in the results: ``GT`` for ``--real``, else the run
name) and the paper's three columns, plus PSNR / SSIM where known and the majority-class baseline once::

    python -m evaluation.compare_runs eval/gt eval/adam eval/tradam --labels GT Adam TRAdam --output table.md

    | Method | Per-pixel acc. | Per-class acc. | Class IOU | PSNR (dB) | SSIM |
    |---|---|---|---|---|---|
    | GT | 0.700 | 0.260 | 0.190 | | |
    ...

Rows are only comparable when they share the scorer (same checkpoint sha256), the protocol, the absent-class
convention, the frames and the size of the scored photos (``synthesized_size``, width x height before any
protocol resize); any difference is printed under the table as a warning (and in the file).

``--output`` never replaces an input: a file inside one of the OUT folders (their ``evaluation_results.json``
included) or in another tool's output folder is refused before anything is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from evaluation.common import EvaluationError, check_output_apart, run_cli
from evaluation.reports import RESULTS_JSON
from pix2pix_tr.io import atomic_write_text

COLUMNS = (("per_pixel_acc", "Per-pixel acc."), ("per_class_acc", "Per-class acc."), ("class_iou", "Class IOU"))


def load_results(out_dir: str | Path) -> dict:
    path = Path(out_dir)
    if path.is_dir():
        path = path / RESULTS_JSON
    if not path.is_file():
        raise EvaluationError(f"{out_dir} holds no {RESULTS_JSON}; pass folders written by python -m "
                              f"evaluation.fcn_score --output_dir OUT")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        results["scores"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise EvaluationError(f"{path} is not an FCN-score results file (no 'scores'); rerun "
                              f"python -m evaluation.fcn_score") from None
    return results


def _cell(x, fmt: str = "{:.3f}") -> str:
    return "" if x is None else fmt.format(x)


#: Figures shown only when some row has them: ``(key that decides, ((title, key, format), ...))``. A new scorer's
#: figure (another mIoU, FID) is one more entry here.
OPTIONAL_COLUMNS = (
    ("miou", (("mIoU (DRN)", "miou", "{:.2f}"),)),  # DRN-D-105 rows (GAN Compression's mIoU)
    ("psnr_mean", (("PSNR (dB)", "psnr_mean", "{:.2f}"), ("SSIM", "ssim_mean", "{:.3f}"))),
)


def compare_table(out_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """The markdown table and a list of comparability warnings."""
    if not out_dirs:
        raise EvaluationError("give at least one fcn_score output folder")
    if labels is not None and len(labels) != len(out_dirs):
        raise EvaluationError(f"--labels has {len(labels)} names for {len(out_dirs)} folders; give one per folder")
    runs = [load_results(d) for d in out_dirs]
    names = list(labels) if labels is not None else [r.get("label") or Path(d).name for r, d in zip(runs, out_dirs)]
    extra = [col for key, cols in OPTIONAL_COLUMNS if any(r.get(key) is not None for r in runs) for col in cols]
    header = ["Method"] + [title for _, title in COLUMNS] + [title for title, _, _ in extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in zip(names, runs):
        cells = [name] + [_cell(r["scores"].get(key)) for key, _ in COLUMNS]
        cells += [_cell(r.get(key), fmt) for _, key, fmt in extra]
        lines.append("| " + " | ".join(cells) + " |")
    base = runs[0].get("majority_baseline")
    if base:
        cells = [f"(majority class: {base['class_name']})"] + [_cell(base.get(k)) for k, _ in COLUMNS]
        cells += [""] * len(extra)
        lines.append("| " + " | ".join(cells) + " |")

    return "\n".join(lines) + "\n", comparability_warnings(runs, names)


#: What must agree between rows, how to read it from a results file, and whether a row that does not record it
#: (the synthesized size of a file written before it was recorded) is left out of that check.
_MUST_AGREE = (("scorer checkpoint (sha256)", lambda r: r.get("scorer", {}).get("sha256"), False),
               ("protocol", lambda r: (r.get("protocol"), r.get("eval_size")), False),
               ("synthesized size", lambda r: r.get("synthesized_size"), True),
               ("absent-class convention", lambda r: r.get("convention"), False),
               ("number of frames", lambda r: r.get("num_frames"), False))


def comparability_warnings(runs: Sequence[dict], names: Sequence[str]) -> list[str]:
    """One sentence per property that differs between rows (scorer, protocol, image size, convention, frames)."""
    warnings = []
    for what, get, optional in _MUST_AGREE:
        pairs = [(n, get(r)) for n, r in zip(names, runs) if not (optional and get(r) is None)]
        if len({str(v) for _, v in pairs}) > 1:
            detail = ", ".join(f"{n}: {v if not isinstance(v, str) else v[:12]}" for n, v in pairs)
            warnings.append(f"rows differ in {what} ({detail}); they are not directly comparable")
    return warnings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.compare_runs",
                                description="Print the paper-style FCN-score table of several fcn_score outputs.")
    p.add_argument("out_dirs", nargs="+", help="fcn_score --output_dir folders, one per row")
    p.add_argument("--labels", nargs="+", default=None, help="row names, one per folder (e.g. GT Adam TRAdam)")
    p.add_argument("--output", default=None, help="also write the table (markdown) to this file")
    return p


def check_output_file(output: str | Path, out_dirs: Sequence[str | Path]) -> None:
    """``--output`` must not be an input (an ``evaluation_results.json`` or anything inside an input folder) nor go
    into another tool's output folder; one sentence before anything is written."""
    folders, files = {}, {}
    for i, given in enumerate(out_dirs):
        path = Path(given)
        folder = path if path.is_dir() else path.parent
        folders[f"the input folder {given}"] = folder
        files[f"the input {RESULTS_JSON} of {given}"] = folder / RESULTS_JSON if path.is_dir() else path
    check_output_apart(output, flag="--output", input_dirs=folders, input_files=files, folder=False)
    if Path(output).is_dir():
        raise EvaluationError(f"--output {output} is a folder; give a file name such as {Path(output) / 'table.md'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output:
        check_output_file(args.output, args.out_dirs)
    table, warnings = compare_table(args.out_dirs, args.labels)
    text = table + "".join(f"\nWarning: {w}" for w in warnings) + ("\n" if warnings else "")
    print(text, end="")
    if args.output:
        atomic_write_text(args.output, text)
    return 0


def command() -> int:
    """``python -m evaluation.compare_runs``: :func:`main` with our exits (one sentence and status 2 on bad input)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(command())
