"""Adam against TRAdam on pix2pix labels->photo, scored by the FCN-score: the paper's Tables 2/3 and Figure 4.

Both runs use the same data, the same seed (so the same initial weights of G and D and the same order of
images, crops and flips) and the same settings; only ``--optimizer`` differs. The steps, each one of the
project's ordinary commands run as a child process and printed before it runs:

 1. (``--synthetic``) ``datasets/make_synthetic_cityscapes.py``: a procedural city in the Cityscapes layout;
 2. ``datasets/prepare_cityscapes_dataset.py``: A|B pairs (photo | colour label) at ``--size``, unless
    ``--dataroot`` already points at prepared pairs;
 3. ``train.py --optimizer adam`` and ``train.py --optimizer tradam`` (labels->photo: ``--direction BtoA``);
 4. ``test.py`` for both -> ``results/{name}/val_latest``;
 5. ``python -m evaluation.train_scorer`` unless ``--scorer`` gives a checkpoint;
 6. ``python -m evaluation.fcn_score`` on the real photos (the GT row) and on both runs;
 7. ``python -m evaluation.compare_runs`` -> ``table.md`` (the paper's layout) and
    ``python -m pix2pix_tr.report.compare`` -> ``gallery/index.html`` (input | Adam | TRAdam | ground truth).

A step whose output already exists is skipped (``--force`` redoes it), so an interrupted comparison continues.
``summary.json`` records the commands, their times and the scores.

On the synthetic city at small size it runs on a CPU::

    python -m experiments.gan_compare --synthetic 60 20 --size 128 --n_epochs 10 --n_epochs_decay 5 \
        --ngf 32 --ndf 32 --out runs/gan_compare_synthetic

On real Cityscapes (unzipped ``leftImg8bit`` and ``gtFine`` in one folder) with the pix2pix defaults
(256x256, U-Net 256, batch 1, 100 + 100 epochs, lr 2e-4, beta1 0.5) it is the paper's experiment::

    python -m experiments.gan_compare --cityscapes_dir ~/data/cityscapes --size 256 \
        --scorer scorers/fcn8s.pth --device cuda --out runs/gan_compare_cityscapes
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from pix2pix_tr.optim._tr import TR_MODES

ROOT = Path(__file__).resolve().parents[1]

LABELS = {"adam": "Adam", "tradam": "TRAdam", "sgd": "SGD", "trsgd": "TRSGD"}


class StepFailed(RuntimeError):
    """A child command exited non-zero; its own message is above in the output."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.gan_compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--cityscapes_dir", help="Cityscapes root holding leftImg8bit/ and gtFine/")
    src.add_argument("--synthetic", nargs=2, type=int, metavar=("N_TRAIN", "N_VAL"),
                     help="make a synthetic city of this many train/val frames under --out first")
    d.add_argument("--synthetic_size", nargs=2, type=int, metavar=("WIDTH", "HEIGHT"), default=(256, 128),
                   help="frame size of the synthetic city")
    d.add_argument("--dataroot", help="already prepared A|B pairs (train/, val/); default: prepare them under --out")
    d.add_argument("--size", type=int, default=256, help="side of the square pix2pix images (pix2pix: 256)")
    t = p.add_argument_group("training (both runs)")
    t.add_argument("--optimizers", nargs="+", choices=sorted(LABELS), default=["adam", "tradam"],
                   help="one run per optimizer, same seed and settings")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n_epochs", type=int, default=100)
    t.add_argument("--n_epochs_decay", type=int, default=100)
    t.add_argument("--netG", default=None, help="default: unet_{size} (unet_256, unet_128 or unet_64)")
    t.add_argument("--ngf", type=int, default=64)
    t.add_argument("--ndf", type=int, default=64)
    t.add_argument("--batch_size", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--beta1", type=float, default=0.5)
    t.add_argument("--tr_lambda", type=float, default=0.1)
    t.add_argument("--tr_period", type=int, default=10)
    t.add_argument("--tr_mode", choices=TR_MODES, default="paper")
    t.add_argument("--train_args", default="", help="more train.py flags, one quoted string (e.g. '--amp bf16')")
    t.add_argument("--test_eval", action="store_true",
                   help="test.py --eval (running BN statistics, no dropout); pix2pix's default is train mode")
    s = p.add_argument_group("FCN-score")
    s.add_argument("--scorer", help="scorer checkpoint from evaluation.train_scorer; default: train one under --out")
    s.add_argument("--scorer_arch", default="fcn8s_small", help="architecture when training the scorer here")
    s.add_argument("--scorer_epochs", type=int, default=None, help="scorer epochs (default: the arch's)")
    s.add_argument("--scorer_base", type=int, default=None, help="fcn8s_small width")
    s.add_argument("--protocol", choices=["pix2pix", "256"], default="pix2pix")
    o = p.add_argument_group("run")
    o.add_argument("--out", default="runs/gan_compare", help="folder for everything this writes")
    o.add_argument("--device", default="auto")
    o.add_argument("--force", action="store_true", help="redo steps whose outputs exist")
    o.add_argument("--dry_run", action="store_true", help="print the commands without running them")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.size < 16 or args.size % 16:
        p.error(f"--size must be a multiple of 16 (pix2pix U-Nets halve it repeatedly), got {args.size}")
    if args.netG is None:
        if args.size not in (64, 128, 256):
            p.error(f"--size {args.size} has no matching U-Net: give --netG (unet_256 needs multiples of 256, "
                    f"unet_128 of 128, unet_64 of 64; resnet_9blocks takes any multiple of 4)")
        args.netG = f"unet_{args.size}"
    if len(set(args.optimizers)) != len(args.optimizers):
        p.error(f"--optimizers lists one twice: {args.optimizers}")
    if args.synthetic and min(args.synthetic) < 1:
        p.error(f"--synthetic needs at least one train and one val frame, got {args.synthetic}")
    if args.cityscapes_dir:
        root = Path(args.cityscapes_dir)
        missing = [sub for sub in ("leftImg8bit/val", "gtFine/val") if not (root / sub).is_dir()]
        if missing:
            p.error(f"--cityscapes_dir {root} has no {' or '.join(missing)}: unzip leftImg8bit_trainvaltest.zip "
                    f"and gtFine_trainvaltest.zip into one folder (or use --synthetic N_TRAIN N_VAL)")
    if args.scorer and not Path(args.scorer).is_file():
        p.error(f"--scorer {args.scorer} does not exist: train one with python -m evaluation.train_scorer, or "
                f"leave --scorer out to train a small one here")
    for flag in ("n_epochs", "n_epochs_decay"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag} must be >= 0")
    if args.n_epochs + args.n_epochs_decay < 1:
        p.error("--n_epochs + --n_epochs_decay must be at least 1")


def plan(args: argparse.Namespace) -> list[tuple[str, list[str], Path | None]]:
    """The commands in order, each with the file whose existence means the step is done (None: always run)."""
    py = sys.executable
    out = Path(args.out).resolve()
    city = Path(args.cityscapes_dir).resolve() if args.cityscapes_dir else out / "cityscapes"
    pairs = Path(args.dataroot).resolve() if args.dataroot else out / "pix2pix"
    checkpoints, results, fcn = out / "checkpoints", out / "results", out / "fcn"
    scorer = Path(args.scorer).resolve() if args.scorer else out / "scorer" / "scorer.pth"
    steps: list[tuple[str, list[str], Path | None]] = []
    if args.synthetic:
        w, h = args.synthetic_size
        steps.append(("synthetic city", [py, "datasets/make_synthetic_cityscapes.py", "--out", str(city),
                                         "--train", str(args.synthetic[0]), "--val", str(args.synthetic[1]),
                                         "--seed", str(args.seed), "--width", str(w), "--height", str(h)],
                      city / "gtFine" / "val"))
    if not args.dataroot:
        steps.append(("prepare A|B", [py, "datasets/prepare_cityscapes_dataset.py", "--gtFine_dir",
                                      str(city / "gtFine"), "--leftImg8bit_dir", str(city / "leftImg8bit"),
                                      "--output_dir", str(pairs), "--size", str(args.size)], pairs / "val"))
    load_size = args.size + args.size // 8  # pix2pix's 286 -> 256 jitter, scaled
    epochs = args.n_epochs + args.n_epochs_decay
    names = {opt: f"{opt}_seed{args.seed}" for opt in args.optimizers}
    for opt, name in names.items():
        steps.append((f"train {opt}", [
            py, "train.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
            "--direction", "BtoA", "--netG", args.netG, "--ngf", str(args.ngf), "--ndf", str(args.ndf),
            "--load_size", str(load_size), "--crop_size", str(args.size), "--batch_size", str(args.batch_size),
            "--n_epochs", str(args.n_epochs), "--n_epochs_decay", str(args.n_epochs_decay),
            "--save_epoch_freq", str(max(1, epochs // 4)), "--optimizer", opt, "--lr", str(args.lr),
            "--beta1", str(args.beta1), "--tr_lambda", str(args.tr_lambda), "--tr_period", str(args.tr_period),
            "--tr_mode", args.tr_mode, "--seed", str(args.seed), "--device", args.device,
            *shlex.split(args.train_args)], checkpoints / name / "latest_net_G.pth"))
    for opt, name in names.items():
        steps.append((f"test {opt}", [
            py, "test.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
            "--results_dir", str(results), "--device", args.device, "--seed", str(args.seed),
            *(["--eval"] if args.test_eval else [])], results / name / "val_latest" / "index.html"))
    if not args.scorer:
        cmd = [py, "-m", "evaluation.train_scorer", "--cityscapes_dir", str(city), "--output", str(scorer),
               "--arch", args.scorer_arch, "--image_size", str(args.size), "--seed", str(args.seed),
               "--device", args.device, "--no_eval", "--no_progress"]
        if args.scorer_epochs:
            cmd += ["--epochs", str(args.scorer_epochs)]
        if args.scorer_base:
            cmd += ["--base", str(args.scorer_base)]
        steps.append(("train scorer", cmd, scorer))
    common = ["--cityscapes_dir", str(city), "--scorer", str(scorer), "--protocol", args.protocol,
              "--device", args.device, "--no_progress"]
    steps.append(("FCN-score GT", [py, "-m", "evaluation.fcn_score", "--real", "--real_size", str(args.size),
                                   "--label", "GT", "--output_dir", str(fcn / "GT"), *common],
                  fcn / "GT" / "evaluation_results.json"))
    for opt, name in names.items():
        steps.append((f"FCN-score {opt}", [
            py, "-m", "evaluation.fcn_score", "--result_dir", str(results / name / "val_latest"),
            "--label", LABELS[opt], "--output_dir", str(fcn / name), *common],
            fcn / name / "evaluation_results.json"))
    labels = ["GT"] + [LABELS[o] for o in names]
    steps.append(("table", [py, "-m", "evaluation.compare_runs", str(fcn / "GT"),
                            *[str(fcn / n) for n in names.values()], "--labels", *labels,
                            "--output", str(out / "table.md")], None))
    steps.append(("gallery", [py, "-m", "pix2pix_tr.report.compare",
                              *[str(results / n / "val_latest") for n in names.values()],
                              "--labels", *[LABELS[o] for o in names], "--output", str(out / "gallery"),
                              "--title", "labels->photo: " + " vs ".join(LABELS[o] for o in names)], None))
    return steps


def _shown(cmd: Sequence[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd).replace(shlex.quote(sys.executable), "python", 1)


def run_steps(steps, *, force: bool = False, dry_run: bool = False) -> list[dict]:
    log = []
    for title, cmd, marker in steps:
        if marker is not None and marker.exists() and not force:
            print(f"\n(skipping {title}: {marker} exists; --force redoes it)", flush=True)
            continue
        print(f"\n[{title}] $ {_shown(cmd)}", flush=True)
        if dry_run:
            continue
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=ROOT)
        log.append(dict(step=title, command=_shown(cmd), seconds=round(time.perf_counter() - start, 1),
                        returncode=result.returncode))
        if result.returncode != 0:
            raise StepFailed(f"step '{title}' failed with exit status {result.returncode} (its message is above); "
                             f"fix it and rerun the same command: finished steps are kept")
    return log


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    steps = plan(args)
    try:
        log = run_steps(steps, force=args.force, dry_run=args.dry_run)
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    out = Path(args.out).resolve()
    scores = {}
    for folder in sorted((out / "fcn").iterdir()):
        result = json.loads((folder / "evaluation_results.json").read_text())
        scores[result.get("label") or folder.name] = {k: result["scores"][k]
                                                      for k in ("per_pixel_acc", "per_class_acc", "class_iou")}
    from pix2pix_tr.io import atomic_write_text

    summary = dict(args={k: v for k, v in vars(args).items()}, steps=log, scores=scores,
                   table=str(out / "table.md"), gallery=str(out / "gallery" / "index.html"))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print("\n" + (out / "table.md").read_text())
    print(f"gallery: {out / 'gallery' / 'index.html'}\nsummary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
