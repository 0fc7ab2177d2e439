"""The whole pix2pix-TR job on the embedded synthetic city, in one command.

    python demo.py                      # a few minutes on 2 CPU cores (the README gives the time measured)
    python demo.py --preset tiny        # the smallest run, for the test suite and a quick check
    pix2pix-tr-demo --preset tiny       # the same, installed (pip install pix2pix-tr), from any folder

Each step is one of the project's ordinary commands, printed before it runs, so the same sequence on real
Cityscapes is the printed one with other folders (see "Real Cityscapes" in the README). In a checkout the steps
are the scripts below; from an installed package (no checkout) they are the installed ``pix2pix-tr-*`` commands
(``pix2pix-tr-synthetic-city``, ``pix2pix-tr-prepare-cityscapes``, ``pix2pix-tr-train``, ``pix2pix-tr-test``,
``pix2pix-tr-train-scorer``, ``pix2pix-tr-fcn-score``) and ``python -m evaluation.compare_runs``:

 1. ``datasets/make_synthetic_cityscapes.py``   a procedural city in the Cityscapes layout
 2. ``datasets/prepare_cityscapes_dataset.py``  -> pix2pix A|B pairs (photo | colour label), frame names kept
 3. ``train.py``                                pix2pix labels->photo, G and D each with its own TRAdam
 4. ``test.py``                                 synthesize the val split -> HTML gallery
 5. ``python -m evaluation.train_scorer``       a small segmentation network trained on the real (synthetic) photos
 6. ``python -m evaluation.fcn_score``          FCN-score of the synthesized photos, and of the real ones (GT row)
 7. ``python -m evaluation.compare_runs``       the paper-style table

Everything goes under ``--out`` (default ``runs/demo``). A rerun continues exactly (:mod:`pix2pix_tr.steps`): a
step finished with the same command is skipped; an interrupted training or scorer run continues from its last
checkpoint (``--continue_train`` / ``--resume``), any other interrupted step starts over, and the steps that read
a redone step's output run again. A rerun with other settings (``--seed 7`` into a seed-0 demo, another
``--preset``) is refused before anything runs unless ``--force``, which redoes the steps whose settings changed
(their old outputs removed first), so ``demo_summary.json`` always describes the run it summarises.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pix2pix_tr.options import OPTIMIZERS
from pix2pix_tr.paths import PathError, ensure_writable_dir
from pix2pix_tr.steps import Step, StepFailed, StepRefused, execute, plan

#: The checkout this module lives in, or None when it was installed from a wheel (no train.py beside it).
_PARENT = Path(__file__).resolve().parents[1]
ROOT: Path | None = _PARENT if (_PARENT / "train.py").is_file() and (_PARENT / "datasets").is_dir() else None

#: Each step's command in a checkout (a script, or ``-m module``) and installed (a console script).
_COMMANDS = {
    "synthetic": (["datasets/make_synthetic_cityscapes.py"], "pix2pix-tr-synthetic-city"),
    "prepare": (["datasets/prepare_cityscapes_dataset.py"], "pix2pix-tr-prepare-cityscapes"),
    "train": (["train.py"], "pix2pix-tr-train"),
    "test": (["test.py"], "pix2pix-tr-test"),
    "train_scorer": (["-m", "evaluation.train_scorer"], "pix2pix-tr-train-scorer"),
    "fcn_score": (["-m", "evaluation.fcn_score"], "pix2pix-tr-fcn-score"),
    "compare_runs": (["-m", "evaluation.compare_runs"], None),
}


def command(step: str) -> list[str]:
    """The argv prefix of one step: ``python SCRIPT`` in a checkout, else the installed console script (found
    beside this Python, as in a virtual environment, or on PATH)."""
    in_checkout, script = _COMMANDS[step]
    if ROOT is not None or script is None:
        return [sys.executable, *in_checkout]
    beside = Path(sys.executable).parent / script
    found = str(beside) if beside.is_file() else shutil.which(script)
    if found is None:
        raise SystemExit(f"demo: error: the command {script} is not installed; reinstall the package with "
                         f"pip install pix2pix-tr (it installs the pix2pix-tr-* commands), or run demo.py from a "
                         f"checkout")
    return [found]


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo run. ``image_size`` is the side of the square pix2pix images (and of the scorer's input)."""

    n_train: int
    n_val: int
    city_width: int
    city_height: int
    image_size: int
    netG: str
    ngf: int
    ndf: int
    n_epochs: int
    n_epochs_decay: int
    scorer_arch: str
    scorer_base: int
    scorer_epochs: int


PRESETS = {
    # The newcomer's default: sized so that the whole job stays well under 10 minutes on 2 CPU cores (the README
    # gives the time measured) and the synthesized photos visibly follow the label layout.
    "default": Preset(n_train=100, n_val=30, city_width=256, city_height=128, image_size=128, netG="unet_128",
                      ngf=32, ndf=32, n_epochs=12, n_epochs_decay=8, scorer_arch="fcn8s_small", scorer_base=16,
                      scorer_epochs=15),
    # The smallest run that exercises every step (the end-to-end test uses it).
    "tiny": Preset(n_train=6, n_val=3, city_width=128, city_height=64, image_size=64, netG="unet_64",
                   ngf=8, ndf=8, n_epochs=1, n_epochs_decay=0, scorer_arch="fcn8s_small", scorer_base=8,
                   scorer_epochs=1),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="demo.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo writes")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="run size")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="tradam",
                   help="optimizer of both networks (the paper's GAN experiment uses tradam)")
    p.add_argument("--seed", type=int, default=0, help="seed of the city, the training and the scorer")
    p.add_argument("--force", action="store_true",
                   help="redo the steps whose settings changed since they ran in --out (their old outputs are "
                        "removed first); without it such a rerun is refused")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    return p.parse_args(argv)


def plan_steps(args: argparse.Namespace, out: Path) -> list[Step]:
    """The demo's commands (:class:`pix2pix_tr.steps.Step`), each with what it writes and what it reads."""
    preset = PRESETS[args.preset]
    city, pairs = out / "cityscapes", out / "pix2pix"
    checkpoints, results, scores = out / "checkpoints", out / "results", out / "fcn"
    name = f"demo_{args.optimizer}"
    scorer = out / "scorer" / "scorer.pth"
    result_dir = results / name / "val_latest"
    fake_scores, real_scores = scores / name, scores / "real"
    load_size = preset.image_size + preset.image_size // 8  # pix2pix's 286 -> 256 jitter, scaled
    return [
        # 1-2: data
        Step("city", "synthetic city", [
            *command("synthetic"), "--out", str(city), "--train", str(preset.n_train), "--val", str(preset.n_val),
            "--seed", str(args.seed), "--width", str(preset.city_width), "--height", str(preset.city_height)], [city]),
        Step("pairs", "A|B pairs", [
            *command("prepare"), "--gtFine_dir", str(city / "gtFine"), "--leftImg8bit_dir", str(city / "leftImg8bit"),
            "--output_dir", str(pairs), "--size", str(preset.image_size)], [pairs], ["city"]),
        # 3-4: pix2pix labels -> photo (A = photo, B = label, hence BtoA), then the val gallery
        Step(f"train_{name}", "training", [
            *command("train"), "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
            "--direction", "BtoA", "--netG", preset.netG, "--ngf", str(preset.ngf), "--ndf", str(preset.ndf),
            "--load_size", str(load_size), "--crop_size", str(preset.image_size),
            "--n_epochs", str(preset.n_epochs), "--n_epochs_decay", str(preset.n_epochs_decay),
            "--save_epoch_freq", str(max(1, (preset.n_epochs + preset.n_epochs_decay) // 3)),
            "--optimizer", args.optimizer, "--seed", str(args.seed), "--num_threads", "0", "--device", args.device],
            [checkpoints / name], ["pairs"], resume=(checkpoints / name / "training_state.pth", "--continue_train")),
        Step(f"test_{name}", "val gallery", [
            *command("test"), "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
            "--results_dir", str(results), "--eval", "--num_threads", "0", "--device", args.device],
            [result_dir], [f"train_{name}", "pairs"]),
        # 5-7: the FCN-score
        Step("scorer", "scorer", [
            *command("train_scorer"), "--cityscapes_dir", str(city), "--output", str(scorer),
            "--arch", preset.scorer_arch, "--base", str(preset.scorer_base), "--epochs", str(preset.scorer_epochs),
            "--image_size", str(preset.image_size), "--seed", str(args.seed), "--num_workers", "0",
            "--device", args.device, "--no_eval"],
            [scorer.parent], ["city"], resume=(scorer.with_name(scorer.stem + ".train_state.pth"), "--resume")),
        Step("fcn_real", "FCN-score of the real photos", [
            *command("fcn_score"), "--real", "--cityscapes_dir", str(city), "--scorer", str(scorer),
            "--output_dir", str(real_scores), "--real_size", str(preset.image_size), "--label", "GT",
            "--device", args.device], [real_scores], ["scorer", "city"]),
        Step(f"fcn_{name}", "FCN-score of the synthesized photos", [
            *command("fcn_score"), "--result_dir", str(result_dir), "--cityscapes_dir", str(city),
            "--scorer", str(scorer), "--output_dir", str(fake_scores), "--label", _row_label(args.optimizer),
            "--device", args.device], [fake_scores], ["scorer", "city", f"test_{name}"]),
        Step("table", "table", [*command("compare_runs"), str(real_scores), str(fake_scores), "--output",
                                str(out / "fcn_score_table.md")], [], always=True),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    try:
        out = ensure_writable_dir(Path(args.out).resolve(), flag="--out")
    except PathError as exc:
        print(f"demo.py: error: {exc}", file=sys.stderr)
        return 2
    steps = plan_steps(args, out)
    try:
        decisions = plan(steps, out, force=args.force)
    except StepRefused as exc:  # e.g. --seed 7 into a folder holding a seed-0 demo
        print(f"demo.py: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        log = execute(decisions, out, cwd=ROOT, program="demo.py")
    except StepFailed as exc:
        print(f"demo.py: error: {exc}", file=sys.stderr)
        return exc.returncode if exc.returncode in (1, 2, 3) else 1

    name = f"demo_{args.optimizer}"
    result_dir = out / "results" / name / "val_latest"
    summary = _summary(out, name, result_dir, out / "fcn" / "real", out / "fcn" / name, out / "fcn_score_table.md")
    summary.update(preset=args.preset, sizes=asdict(preset), optimizer=args.optimizer, seed=args.seed,
                   steps=log, seconds=round(time.perf_counter() - start, 1))
    from pix2pix_tr.io import atomic_write_text

    atomic_write_text(out / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    return 0


def _row_label(optimizer: str) -> str:
    return {"tradam": "TRAdam", "adam": "Adam", "trsgd": "TRSGD", "sgd": "SGD"}[optimizer]


def _scores(folder: Path) -> dict:
    return json.loads((folder / "evaluation_results.json").read_text())


def _summary(out: Path, name: str, result_dir: Path, real_scores: Path, fake_scores: Path, table: Path) -> dict:
    real, fake = _scores(real_scores), _scores(fake_scores)
    keys = ("per_pixel_acc", "per_class_acc", "class_iou")
    return {
        "out": str(out),
        "training_page": str(out / "checkpoints" / name / "web" / "index.html"),
        "gallery": str(result_dir / "index.html"),
        "fcn_report_synthesized": str(fake_scores / "index.html"),
        "fcn_report_real": str(real_scores / "index.html"),
        "table": str(table),
        "scores": {
            "GT (real photos)": {k: real["scores"][k] for k in keys},
            f"{name} (synthesized)": {k: fake["scores"][k] for k in keys},
            "majority class everywhere": {k: fake["majority_baseline"][k] for k in keys},
        },
    }


def _print_summary(summary: dict) -> None:
    print("\n" + "=" * 78)
    print(f"demo finished in {summary['seconds'] / 60:.1f} min ({summary['preset']} preset, "
          f"optimizer {summary['optimizer']})\n")
    print(f"{'FCN-score on the val split':34s} {'per-pixel acc':>13s} {'per-class acc':>13s} {'class IoU':>10s}")
    for row, s in summary["scores"].items():
        print(f"{row:34s} {s['per_pixel_acc']:13.3f} {s['per_class_acc']:13.3f} {s['class_iou']:10.3f}")
    print("\nopen in a browser:")
    for key in ("gallery", "training_page", "fcn_report_synthesized", "fcn_report_real"):
        print(f"  {key:24s} {_shown(summary[key])}")
    print(f"  {'table (markdown)':24s} {_shown(summary['table'])}")
    print(f"  {'this summary (json)':24s} {_shown(Path(summary['out']) / 'demo_summary.json')}")


def _shown(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
