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
protocol resize); any difference is printed under the table as a warning (and in the file). Under the table, a line
names the scorer (its kind and sha256 prefix) and the protocol, and where the rows' scorer and protocol are the ones
a paper published numbers with (the pix2pix FCN-8s under ``pix2pix``: the TRAdam paper's Table 2; DRN-D-105 under
``drn``: GAN Compression's mIoU), those numbers follow as ``(published)`` rows.

``--runs``: one row per *run*, everything it was scored with. Each folder is a run's evaluation folder, holding one
``fcn_score`` output per scorer in its subfolders (and, optionally, ``evaluation.fid --json`` files)::

    eval/adam/fcn8s/  eval/adam/dpc/  eval/adam/drn/  eval/adam/fid.json
    python -m evaluation.compare_runs --runs eval/gt eval/adam eval/tradam --labels GT Adam TRAdam

The columns come in groups, one per scorer file and protocol, each titled with the scorer, the first 8 hex digits
of its sha256 and the protocol: the three FCN-scores (the pix2pix FCN-8s: Table 2; DeepLab's DPC: Table 3; a
trained scorer), DRN-D-105's mIoU, and FID/KID (titled with the Inception weights' sha256 prefix and the FID
protocol; from ``fcn_score --fid_weights`` or ``evaluation.fid --json``). The published numbers are rows of their
own, in the columns of the scorer and protocol they were measured with.

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
    ("fid", (("FID", "fid", "{:.2f}"), ("KID", "kid_mean", "{:.4f}"))),  # fcn_score --fid_weights
)

#: Numbers papers published, by (scorer kind, protocol): ``(row name, {results key: value})``. The TRAdam paper's
#: Table 2 is the design card's; GAN Compression's mIoU rows are its README's (docs/evaluation.md). The TRAdam
#: paper's Table 3 (DPC) numbers were not available to this work: fill them in here when you have the paper.
PUBLISHED = {
    ("caffe_fcn8s", "pix2pix"): (
        ("TRAdam paper, Table 2: GT", {"per_pixel_acc": 0.70, "per_class_acc": 0.26, "class_iou": 0.19}),
        ("TRAdam paper, Table 2: Adam", {"per_pixel_acc": 0.64, "per_class_acc": 0.24, "class_iou": 0.17}),
        ("TRAdam paper, Table 2: TRAdam", {"per_pixel_acc": 0.66, "per_class_acc": 0.24, "class_iou": 0.17})),
    ("drn_d_105", "drn"): (
        ("GAN Compression: original pix2pix", {"miou": 42.06}),
        ("GAN Compression: compressed (paper)", {"miou": 40.77}),
        ("GAN Compression: compressed (retrained)", {"miou": 38.63})),
    ("deeplab_dpc", "dpc"): (),
}
_KIND_NAMES = {"caffe_fcn8s": "FCN-8s", "drn_d_105": "DRN-D-105", "deeplab_dpc": "DPC-Xception71"}


def scorer_title(results: dict) -> str:
    """``FCN-8s 1a2b3c4d, pix2pix``: the scorer's kind (a trained scorer: its architecture), the first 8 hex digits
    of its file's sha256, the protocol (with ``--eval_size`` for ``256``)."""
    sc = results.get("scorer", {})
    kind = sc.get("kind", "trained")
    name = _KIND_NAMES.get(kind, sc.get("arch") or kind)
    protocol = results.get("protocol")
    if protocol == "256" and results.get("eval_size"):
        protocol = f"256 at {results['eval_size']}"
    return f"{name} {str(sc.get('sha256', '?'))[:8]}, {protocol}"


def _published_rows(kind: str | None, protocol: str | None, width: int, keys: Sequence[str]) -> list[str]:
    rows = []
    for name, values in PUBLISHED.get((kind, protocol), ()):
        cells = [f"{name} (published)"] + [_cell(values.get(k)) if k != "miou" else _cell(values.get(k), "{:.2f}")
                                           for k in keys]
        cells += [""] * (width - len(cells))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


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
    kinds = {(r.get("scorer", {}).get("kind", "trained"), r.get("protocol")) for r in runs}
    if len(kinds) == 1:
        kind, protocol = kinds.pop()
        keys = [k for k, _ in COLUMNS] + [key for _, key, _ in extra]
        lines += _published_rows(kind, protocol, len(header), keys)
    titles = sorted({scorer_title(r) for r in runs})
    lines.append("")
    lines.append(f"Scorer (kind, sha256 prefix, protocol): {'; '.join(titles)}.")
    fids = sorted({_fid_title(r) for r in runs if r.get("fid") is not None})
    if fids:
        lines.append(f"FID/KID: {'; '.join(fids)}.")
    return "\n".join(lines) + "\n", comparability_warnings(runs, names)


def _fid_title(results: dict) -> str:
    d = results.get("fid_details") or results
    return f"Inception {str(d.get('weights_sha256', '?'))[:8]}, {d.get('fid_protocol') or 'folders'}"


# ---------------------------------------------------------------------------------------------- --runs
def load_run(run_dir: str | Path) -> list[dict]:
    """The ``fcn_score`` results in a run's evaluation folder (itself or its subfolders) and the FID results of
    ``evaluation.fid --json`` files in it (marked ``"_fid_only": True``)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise EvaluationError(f"--runs {run_dir} is not a folder; pass a run's evaluation folder holding one "
                              f"fcn_score --output_dir per scorer")
    found = [load_results(root)] if (root / RESULTS_JSON).is_file() else []
    found += [load_results(sub) for sub in sorted(root.iterdir()) if (sub / RESULTS_JSON).is_file()]
    for path in sorted(root.glob("*.json")):
        if path.name == RESULTS_JSON:
            continue
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(body, dict) and {"fid", "kid_mean", "weights_sha256"} <= set(body):
            found.append({**body, "_fid_only": True, "fid_details": body})
    if not found:
        raise EvaluationError(f"--runs {run_dir} holds no {RESULTS_JSON} (in it or in its subfolders) and no FID "
                              f"json; pass folders whose subfolders were written by python -m evaluation.fcn_score")
    return found


def runs_table(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """One row per run folder, one column group per scorer file and protocol (see the module docstring)."""
    if not run_dirs:
        raise EvaluationError("give at least one run folder")
    if labels is not None and len(labels) != len(run_dirs):
        raise EvaluationError(f"--labels has {len(labels)} names for {len(run_dirs)} folders; give one per folder")
    runs = [load_run(d) for d in run_dirs]
    names = list(labels) if labels is not None else [
        next((r.get("label") for r in results if r.get("label")), Path(d).name) for results, d in zip(runs, run_dirs)]
    groups: dict[tuple, dict] = {}  # key -> {"title", "keys", "kind", "protocol"}
    cells: dict[tuple[int, tuple], dict] = {}
    warnings: list[str] = []
    for row, results in enumerate(runs):
        for r in results:
            entries = []
            if not r.get("_fid_only"):
                sc = r.get("scorer", {})
                kind = sc.get("kind", "trained")
                key = ("scores", kind, str(sc.get("sha256"))[:8], r.get("protocol"), r.get("eval_size"))
                keys = ("miou",) if kind == "drn_d_105" and r.get("miou") is not None else tuple(k for k, _ in COLUMNS)
                values = {k: (r.get(k) if k == "miou" else r["scores"].get(k)) for k in keys}
                entries.append((key, scorer_title(r), keys, kind, r.get("protocol"), values, r))
            if r.get("fid") is not None:
                d = r.get("fid_details") or {}
                key = ("fid", str(d.get("weights_sha256"))[:8], d.get("fid_protocol") or "folders")
                entries.append((key, f"FID: {_fid_title(r)}", ("fid", "kid_mean"), None, None,
                                {"fid": r["fid"], "kid_mean": r["kid_mean"]}, r))
            for key, title, keys, kind, protocol, values, r in entries:
                groups.setdefault(key, {"title": title, "keys": keys, "kind": kind, "protocol": protocol})
                previous = cells.get((row, key))
                if previous is not None and previous["values"] != values:
                    warnings.append(f"run {names[row]} has two results for {title}; the table shows the first")
                    continue
                cells.setdefault((row, key), {"values": values, "results": r})
    order = sorted(groups, key=lambda k: (k[0] == "fid", groups[k]["title"]))
    header = ["Run"]
    fmt = {"miou": "{:.2f}", "fid": "{:.2f}", "kid_mean": "{:.4f}"}
    short = {"per_pixel_acc": "per-pixel acc.", "per_class_acc": "per-class acc.", "class_iou": "class IOU",
             "miou": "mIoU", "fid": "FID", "kid_mean": "KID"}
    for key in order:
        header += [f"{groups[key]['title']}: {short[k]}" for k in groups[key]["keys"]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, name in enumerate(names):
        line = [name]
        for key in order:
            got = cells.get((row, key))
            line += [_cell(got["values"].get(k), fmt.get(k, "{:.3f}")) if got else "" for k in groups[key]["keys"]]
        lines.append("| " + " | ".join(line) + " |")
    for key in order:  # published numbers, in the columns of the scorer and protocol they were measured with
        group = groups[key]
        for pname, values in PUBLISHED.get((group["kind"], group["protocol"]), ()):
            line = [f"{pname} (published)"]
            for other in order:
                line += [_cell(values.get(k), fmt.get(k, "{:.3f}")) if other == key else ""
                         for k in groups[other]["keys"]]
            lines.append("| " + " | ".join(line) + " |")
        if group["kind"] == "deeplab_dpc":
            warnings.append("the TRAdam paper's Table 3 (DPC) numbers are not built into this table (they were not "
                            "available to this evaluator); put them beside the DPC columns yourself")
    for key in order:
        if key[0] != "scores":
            continue
        present = [(names[row], cells[(row, key)]["results"]) for row in range(len(names)) if (row, key) in cells]
        for w in comparability_warnings([r for _, r in present], [n for n, _ in present]):
            warnings.append(f"{groups[key]['title']}: {w}")
    return "\n".join(lines) + "\n", warnings


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
    p.add_argument("out_dirs", nargs="+", help="fcn_score --output_dir folders, one per row (with --runs: run "
                                               "folders holding one fcn_score output per scorer, one per row)")
    p.add_argument("--runs", action="store_true",
                   help="one row per run folder, a column group per scorer file and protocol, FID/KID, and the "
                        "published numbers of each scorer")
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
    table, warnings = (runs_table if args.runs else compare_table)(args.out_dirs, args.labels)
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
