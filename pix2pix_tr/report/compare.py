"""Runs side by side: the same inputs synthesized by several runs on one page (the paper's Figure 4).

    python -m pix2pix_tr.report.compare results/adam/val_latest results/tradam/val_latest --output results/compare

Each argument is a folder written by ``test.py`` (``results/NAME/{phase}_{epoch}``). The page shows each run's
settings on top (optimizer and its hyper-parameters, generator, test mode...), then one row per input:
``input | fake_B of run 1 | fake_B of run 2 | ... | ground truth``. Only inputs present in every run are shown
(the page says how many were dropped), in the order of the first run. The page links to the runs' own images
with relative links, so it keeps working when a folder holding both the runs and the page (e.g. ``results/``)
is moved or served; ``--copy`` copies the images into ``--output`` instead, which makes the page
self-contained. ``compare.json`` beside the page lists the runs, labels and stems.

A run folder must be trustworthy (:func:`pix2pix_tr.results_folder.check_trusted`, the rule fcn_score applies):
one that test.py left incomplete, or whose images carry another test.py run's id, is refused with advice to rerun
test.py; runs whose recorded test-time preprocessing differs are refused too (their rows would not line up).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from dominate import tags as T

from pix2pix_tr.io import atomic_write_text
from pix2pix_tr.paths import PathError, check_no_overlap
from pix2pix_tr.report.gallery import image_file_name, n_pages
from pix2pix_tr.report.html import image_cell, new_document, page_file_name, pager, rel_url, safe_name, write_document
from pix2pix_tr.results_folder import (RESULTS_JSON, ResultsFolderError, check_trusted, foreign_outputs,
                                       test_preprocess)

__all__ = ["CompareError", "load_run", "compare_runs", "main"]


class CompareError(Exception):
    """A user-facing problem with the runs to compare; the message is one sentence saying what to do."""


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read a test.py result folder: its ``results.json`` or, failing that, the ``images/*_fake_B.png`` there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"{run_dir} is not a folder: pass result folders written by test.py "
                           f"(results/NAME/PHASE_EPOCH)")
    meta_path = run_dir / RESULTS_JSON
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            stems = [str(s) for s in meta["stems"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CompareError(f"{meta_path} is not a test.py results.json ({exc}): rerun test.py for that run") from exc
        # the same rule as fcn_score's: an interrupted (incomplete) or mixed folder is refused
        fakes = [run_dir / "images" / image_file_name(stem, "fake_B") for stem in stems]
        try:
            check_trusted(run_dir, meta, [p for p in fakes if p.is_file()])
        except ResultsFolderError as exc:
            raise CompareError(str(exc)) from None
    else:
        suffix = "_fake_B.png"
        stems = sorted(p.name[: -len(suffix)] for p in (run_dir / "images").glob(f"*{suffix}"))
        if not stems:
            raise CompareError(f"{run_dir} has neither results.json nor images/*_fake_B.png: pass result folders "
                               f"written by test.py (results/NAME/PHASE_EPOCH)")
        meta = {"name": run_dir.parent.name, "epoch": run_dir.name, "header": {"run": run_dir.parent.name,
                                                                               "folder": run_dir.name}}
    return {"dir": run_dir, "name": str(meta.get("name", run_dir.parent.name)), "epoch": str(meta.get("epoch", "")),
            "stems": stems, "header": {str(k): str(v) for k, v in dict(meta.get("header", {})).items()},
            "test_preprocess": test_preprocess(meta)}


def _check_same_framing(runs: Sequence[dict]) -> None:
    """Runs whose test.py preprocessing differs (a centre crop against the whole frame, another size) show
    different parts of the picture in one row: refused, naming both, where both folders record it."""
    recorded = [(r, r["test_preprocess"]) for r in runs if r.get("test_preprocess") is not None]
    for run, pre in recorded[1:]:
        first, first_pre = recorded[0]
        if pre != first_pre:
            raise CompareError(f"{first['dir']} and {run['dir']} were made with different test-time preprocessing "
                               f"({_framing(first_pre)} vs {_framing(pre)}), so a row would show different parts of "
                               f"the frames; rerun test.py for one of them with the other's --preprocess, "
                               f"--load_size and --crop_size")


def _framing(pre: dict) -> str:
    return ", ".join(f"{k} {pre[k]}" for k in ("preprocess", "load_size", "crop_size", "crop") if k in pre)


def _labels(runs: Sequence[dict], labels: Sequence[str] | None) -> list[str]:
    if labels:
        if len(labels) != len(runs):
            raise CompareError(f"--labels got {len(labels)} label(s) for {len(runs)} run folder(s): give one per run")
        return [str(l) for l in labels]
    out = [r["name"] for r in runs]
    if len(set(out)) < len(out):
        out = [f"{r['name']} {r['epoch']}".strip() for r in runs]
    if len(set(out)) < len(out):
        out = [f"{l} #{i + 1}" for i, l in enumerate(out)]
    return out


def _folder_cell(run_dir: Path, output: Path, copy: bool):
    """The run folder: linked when the page points into it; with ``copy`` the page stands on its own (it may be
    committed or moved), so the folder is only named, never linked outside ``output``."""
    if copy:
        return run_dir.name
    if (run_dir / "index.html").is_file():
        return T.a(rel_url(run_dir, output), href=rel_url(run_dir / "index.html", output))
    return rel_url(run_dir, output)


def _header_value(value: str, copy: bool) -> str:
    """With ``copy`` an absolute path of this machine is cut to its last two parts (``.../run/file``)."""
    if not copy:
        return value
    return re.sub(r"(?<![\w.])/(?:[^\s/]+/)+[^\s/]+", lambda m: ".../" + "/".join(m.group(0).split("/")[-2:]), value)


def compare_runs(run_dirs: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                 labels: Sequence[str] | None = None, per_page: int = 50, visual: str = "fake_B",
                 copy: bool = False, title: str | None = None) -> dict[str, Any]:
    """Write the comparison pages into ``output``; returns what ``compare.json`` holds.

    Inputs and ground truth (``real_A``/``real_B``) are taken from the first run; ``visual`` (``fake_B``) from
    every run.
    """
    if len(run_dirs) < 2:
        raise CompareError("compare needs at least two result folders (results/NAME/PHASE_EPOCH) to put side by side")
    if per_page < 1:
        raise CompareError(f"--per_page must be at least 1, got {per_page}")
    runs = [load_run(d) for d in run_dirs]
    _check_same_framing(runs)
    names = _labels(runs, labels)
    output = Path(output)
    try:  # the output must not be a run folder or lie inside one (its pages would replace the run's)
        check_no_overlap(output, {f"the run folder {i + 1}": r["dir"] for i, r in enumerate(runs)}, output_flag="--output")
    except PathError as exc:
        raise CompareError(str(exc)) from None
    foreign = foreign_outputs(output, own=("compare.json",))
    if foreign is not None:  # e.g. an fcn_score report, whose index.html the page would replace
        raise CompareError(f"--output {output} holds {foreign}, and compare must not write into another tool's "
                           f"output folder: choose a new --output")

    # stems present in every run (listed and on disk), in the first run's order
    def present(run, stem, vis):
        return (run["dir"] / "images" / image_file_name(stem, vis)).is_file()

    first = runs[0]
    candidates = list(dict.fromkeys(first["stems"]))
    sets = [set(r["stems"]) for r in runs]
    stems = [s for s in candidates if all(s in st for st in sets)
             and all(present(r, s, visual) for r in runs)
             and present(first, s, "real_A") and present(first, s, "real_B")]
    union = set().union(*sets)
    dropped = sorted(union - set(stems))
    missing_per_run = {names[i]: len(union - sets[i]) for i in range(len(runs))}
    if not stems:
        raise CompareError(f"the {len(runs)} runs have no input in common (no stem has images in every run): "
                           f"run test.py on the same --dataroot and --phase")

    output.mkdir(parents=True, exist_ok=True)

    def src(run_index: int, stem: str, vis: str) -> str:
        run = runs[run_index]
        path = run["dir"] / "images" / image_file_name(stem, vis)
        if copy:
            dest = output / "images" / f"{run_index + 1}_{safe_name(names[run_index])}" / image_file_name(stem, vis)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            path = dest
        return rel_url(path, output)

    title = title or "compare: " + " vs ".join(names)
    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    keys = list(dict.fromkeys(k for r in runs for k in r["header"]))
    total = n_pages(len(stems), per_page)
    note = (f"{len(stems)} input(s) present in all {len(runs)} runs"
            + (f"; {len(dropped)} dropped because some run lacks them "
               f"({', '.join(f'{n}: {m} missing' for n, m in missing_per_run.items() if m)})" if dropped else "")
            + f". Made {date}.")
    pages = []
    rows = []  # (stem, [srcs]) built once, reused by the pages
    for stem in stems:
        rows.append((stem, [src(0, stem, "real_A")] + [src(i, stem, visual) for i in range(len(runs))]
                     + [src(0, stem, "real_B")]))
    captions = ["input (real_A)"] + [f"{n}: {visual}" for n in names] + ["ground truth (real_B)"]
    for page in range(1, total + 1):
        chunk = rows[(page - 1) * per_page: page * per_page]
        start = (page - 1) * per_page + 1
        doc = new_document(f"{title} ({page}/{total})" if total > 1 else title)
        with doc:
            T.h1(title)
            with T.table(cls="meta"):
                T.tr(T.th(""), *[T.th(n) for n in names])
                T.tr(T.th("folder"), *[T.td(_folder_cell(r["dir"], output, copy)) for r in runs])
                for k in keys:
                    T.tr(T.th(k), *[T.td(_header_value(r["header"].get(k, "-"), copy)) for r in runs])
            T.p(note, cls="note")
            pager(page, total)
            with T.table(cls="gallery"):
                T.tr(T.th("#"), T.th("name"), *[T.th(c) for c in captions])
                for i, (stem, srcs) in enumerate(chunk, start=start):
                    with T.tr():
                        T.td(str(i))
                        T.td(stem, cls="stem")
                        for s, c in zip(srcs, captions):
                            image_cell(s, c)
            pager(page, total)
        pages.append(write_document(doc, output / page_file_name(page)))
    page = total + 1
    while (output / page_file_name(page)).exists():  # stale pages of an earlier, longer comparison
        (output / page_file_name(page)).unlink()
        page += 1
    result = {"runs": [r["dir"].name if copy else rel_url(r["dir"], output) for r in runs], "labels": names, "visual": visual,
              "stems": stems, "dropped": dropped, "pages": [p.name for p in pages], "date": date, "copied": copy}
    atomic_write_text(output / "compare.json", json.dumps(result, indent=1))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pix2pix_tr.report.compare",
        description="Put the test.py results of several runs side by side on one HTML page (e.g. Adam vs TRAdam).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="result folders written by test.py: results/NAME/PHASE_EPOCH (two or more)")
    p.add_argument("--output", default="results/compare", help="folder of the comparison page")
    p.add_argument("--labels", nargs="+", default=None, help="column titles, one per run (default: run names)")
    p.add_argument("--per_page", type=int, default=50, help="rows per page")
    p.add_argument("--visual", default="fake_B", help="which image of each run to compare")
    p.add_argument("--copy", action="store_true",
                   help="copy the images into --output (self-contained page) instead of linking to the runs")
    p.add_argument("--title", default=None, help="page title")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = compare_runs(args.run_dirs, args.output, labels=args.labels, per_page=args.per_page,
                              visual=args.visual, copy=args.copy, title=args.title)
    except CompareError as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    extra = f" ({len(result['dropped'])} dropped: not in every run)" if result["dropped"] else ""
    print(f"compared {len(result['stems'])} input(s){extra} across {len(result['labels'])} runs: "
          f"open {Path(args.output) / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
