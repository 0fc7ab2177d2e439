"""Adam against TRAdam on pix2pix labels->photo over seeds and scorers: the paper's Tables 2/3 and Figure 4.

Every arm (default: Adam, TRAdam, and Adam at 0.293x its lr, TRAdam's mean inner step H_10/10) is trained
once per seed in ``--seeds``; for one seed all arms share the data, the initial weights of G and D and the
order of images, crops and flips, so arm differences are paired by seed. Each run is scored by every scorer
in ``--scorer_seeds`` (FCN scorers trained here with different seeds; or ``--scorer`` checkpoints), so the
table shows how much the scorer alone moves a score. The steps, each one of the project's ordinary commands
run as a child process and printed before it runs:

 1. (``--synthetic``) ``datasets/make_synthetic_cityscapes.py``: a procedural city in the Cityscapes layout
    (one city for all seeds: ``--data_seed``);
 2. ``datasets/prepare_cityscapes_dataset.py``: A|B pairs (photo | colour label) at ``--size``, unless
    ``--dataroot`` already points at prepared pairs;
 3. ``train.py`` per arm and seed (labels->photo: ``--direction BtoA``), then ``test.py``;
 4. ``python -m evaluation.train_scorer`` per scorer seed, unless ``--scorer`` gives checkpoints;
 5. ``python -m evaluation.fcn_score`` per scorer on the real photos (the GT row) and on every run;
 6. ``table.md`` and ``results.json`` (mean over seeds with a 95% bootstrap interval over seeds, the paired
    difference to the first arm, the scorer-to-scorer spread) and ``gallery/index.html`` (input | each arm |
    ground truth for the first seed, images copied so the page stands on its own) in ``--publish``.

A rerun continues exactly (:mod:`pix2pix_tr.steps`): a step finished with the same command is skipped, an
interrupted one continues (training and scorers resume) or starts over, and a step whose inputs were made again
runs again. A rerun with other settings (``--n_epochs``, ``--tr_lambda``, ...) is refused before anything runs,
naming the step and the flags that differ, unless ``--force``: the steps whose settings changed are then redone,
their old outputs removed first, so ``results.json`` never records settings its runs were not made with.

On the synthetic city at small size it runs on a CPU (see experiments/README.md for what was run here)::

    python -m experiments.gan_compare --synthetic 40 12 --size 64 --n_epochs 6 --n_epochs_decay 4 \
        --ngf 16 --ndf 16 --seeds 0 1 2 --scorer_seeds 0 1 --out runs/gan_compare

On real Cityscapes (unzipped ``leftImg8bit`` and ``gtFine`` in one folder) with the pix2pix defaults
(256x256, U-Net 256, batch 1, 100 + 100 epochs, lr 2e-4, beta1 0.5) it is the paper's experiment::

    python -m experiments.gan_compare --cityscapes_dir ~/data/cityscapes --size 256 \
        --scorer scorers/fcn8s_a.pth scorers/fcn8s_b.pth --device cuda --out runs/gan_compare_cityscapes
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from experiments import stats
from pix2pix_tr.io import atomic_write_text
from pix2pix_tr.optim._tr import TR_MODES
from pix2pix_tr.steps import Step, StepFailed, StepRefused, execute
from pix2pix_tr.steps import plan as steps_plan

ROOT = Path(__file__).resolve().parents[1]

LABELS = {"adam": "Adam", "tradam": "TRAdam", "sgd": "SGD", "trsgd": "TRSGD"}
METRICS = ("per_pixel_acc", "per_class_acc", "class_iou")
METRIC_TITLES = {"per_pixel_acc": "Per-pixel acc.", "per_class_acc": "Per-class acc.", "class_iou": "Class IOU",
                 "psnr_mean": "PSNR (dB)", "ssim_mean": "SSIM"}


@dataclass(frozen=True)
class Arm:
    """One optimizer setting: ``OPT``, ``OPT@LR`` (an absolute lr) or ``OPT@xF`` (F times ``--lr``)."""

    spec: str
    optimizer: str
    lr: float
    label: str

    @property
    def key(self) -> str:  # file-name safe
        return self.spec.replace("@", "_at_")


def parse_arm(spec: str, base_lr: float) -> Arm:
    opt, _, lr_text = spec.partition("@")
    if opt not in LABELS:
        raise ValueError(f"--arms {spec}: the optimizer must be one of {', '.join(sorted(LABELS))} "
                         f"(optionally @LR or @xFACTOR, e.g. adam@x0.2929)")
    if not lr_text:
        return Arm(spec, opt, base_lr, LABELS[opt])
    try:
        lr = base_lr * float(lr_text[1:]) if lr_text.startswith("x") else float(lr_text)
    except ValueError:
        raise ValueError(f"--arms {spec}: after @ give an lr (adam@5e-5) or a factor of --lr (adam@x0.2929)") \
            from None
    if not (lr > 0):
        raise ValueError(f"--arms {spec}: the lr must be > 0")
    label = f"{LABELS[opt]} ({lr_text[1:]} lr)" if lr_text.startswith("x") else f"{LABELS[opt]} (lr {lr:g})"
    return Arm(spec, opt, lr, label)


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
    d.add_argument("--data_seed", type=int, default=0, help="seed of the synthetic city (the same for all runs)")
    d.add_argument("--dataroot", help="already prepared A|B pairs (train/, val/); default: prepare them under --out")
    d.add_argument("--size", type=int, default=256, help="side of the square pix2pix images (pix2pix: 256)")
    t = p.add_argument_group("training (every arm and seed)")
    t.add_argument("--arms", "--optimizers", dest="arms", nargs="+", default=["adam", "tradam", "adam@x0.2929"],
                   help="one run per arm and seed: adam, tradam, sgd, trsgd, optionally @LR or @xFACTOR of --lr; "
                        "the first arm is the base of the paired differences")
    t.add_argument("--seeds", "--seed", dest="seeds", nargs="+", type=int, default=[0],
                   help="training seeds (initial weights, image order, crops, flips)")
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
    s.add_argument("--scorer", nargs="+", default=None,
                   help="scorer checkpoint(s) from evaluation.train_scorer; default: train one per --scorer_seeds")
    s.add_argument("--scorer_seeds", nargs="+", type=int, default=[0], help="seeds of the scorers trained here")
    s.add_argument("--scorer_arch", default="fcn8s_small", help="architecture when training the scorer here")
    s.add_argument("--scorer_epochs", type=int, default=None, help="scorer epochs (default: the arch's)")
    s.add_argument("--scorer_base", type=int, default=None, help="fcn8s_small width")
    s.add_argument("--protocol", choices=["pix2pix", "256"], default="pix2pix")
    o = p.add_argument_group("run")
    o.add_argument("--out", default="runs/gan_compare", help="folder for everything this writes")
    o.add_argument("--publish", default=None,
                   help="folder for the self-contained results (table.md, results.json, gallery/); default --out")
    o.add_argument("--device", default="auto")
    o.add_argument("--force", action="store_true",
                   help="redo the steps whose settings changed since they ran (their old outputs are removed first); "
                        "without it such a rerun is refused")
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
    try:
        args.arm_list = [parse_arm(a, args.lr) for a in args.arms]
    except ValueError as exc:
        p.error(str(exc))
    if len({a.key for a in args.arm_list}) != len(args.arm_list):
        p.error(f"--arms lists one twice: {args.arms}")
    for flag in ("seeds", "scorer_seeds"):
        values = getattr(args, flag)
        if len(set(values)) != len(values):
            p.error(f"--{flag} lists a seed twice: {values}")
    if args.synthetic and min(args.synthetic) < 1:
        p.error(f"--synthetic needs at least one train and one val frame, got {args.synthetic}")
    if args.cityscapes_dir:
        root = Path(args.cityscapes_dir)
        missing = [sub for sub in ("leftImg8bit/val", "gtFine/val") if not (root / sub).is_dir()]
        if missing:
            p.error(f"--cityscapes_dir {root} has no {' or '.join(missing)}: unzip leftImg8bit_trainvaltest.zip "
                    f"and gtFine_trainvaltest.zip into one folder (or use --synthetic N_TRAIN N_VAL)")
    for scorer in args.scorer or ():
        if not Path(scorer).is_file():
            p.error(f"--scorer {scorer} does not exist: train one with python -m evaluation.train_scorer, or "
                    f"leave --scorer out to train small ones here (--scorer_seeds)")
    for flag in ("n_epochs", "n_epochs_decay"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag} must be >= 0")
    if args.n_epochs + args.n_epochs_decay < 1:
        p.error("--n_epochs + --n_epochs_decay must be at least 1")


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.key}_seed{seed}"


def scorer_paths(args: argparse.Namespace) -> dict[str, Path]:
    """Scorer name -> checkpoint."""
    if args.scorer:
        return {f"scorer{i}": Path(s).resolve() for i, s in enumerate(args.scorer)}
    out = Path(args.out).resolve()
    return {f"scorer_seed{s}": out / "scorer" / f"scorer_seed{s}.pth" for s in args.scorer_seeds}


def plan(args: argparse.Namespace) -> list[Step]:
    """The commands in order (:class:`pix2pix_tr.steps.Step`), each with what it writes and what it reads."""
    py = sys.executable
    out = Path(args.out).resolve()
    city = Path(args.cityscapes_dir).resolve() if args.cityscapes_dir else out / "cityscapes"
    pairs = Path(args.dataroot).resolve() if args.dataroot else out / "pix2pix"
    checkpoints, results, fcn = out / "checkpoints", out / "results", out / "fcn"
    scorers = scorer_paths(args)
    steps: list[Step] = []
    city_step = ["synthetic"] if args.synthetic else []
    if args.synthetic:
        w, h = args.synthetic_size
        steps.append(Step("synthetic", "synthetic city", [
            py, "datasets/make_synthetic_cityscapes.py", "--out", str(city), "--train", str(args.synthetic[0]),
            "--val", str(args.synthetic[1]), "--seed", str(args.data_seed), "--width", str(w), "--height", str(h)],
            [city]))
    pairs_step = city_step
    if not args.dataroot:
        steps.append(Step("prepare", "prepare A|B", [
            py, "datasets/prepare_cityscapes_dataset.py", "--gtFine_dir", str(city / "gtFine"), "--leftImg8bit_dir",
            str(city / "leftImg8bit"), "--output_dir", str(pairs), "--size", str(args.size)], [pairs], city_step))
        pairs_step = ["prepare"]
    load_size = args.size + args.size // 8  # pix2pix's 286 -> 256 jitter, scaled
    epochs = args.n_epochs + args.n_epochs_decay
    for seed in args.seeds:
        for arm in args.arm_list:
            name = run_name(arm, seed)
            steps.append(Step(f"train_{name}", f"train {arm.spec} seed {seed}", [
                py, "train.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
                "--direction", "BtoA", "--netG", args.netG, "--ngf", str(args.ngf), "--ndf", str(args.ndf),
                "--load_size", str(load_size), "--crop_size", str(args.size), "--batch_size", str(args.batch_size),
                "--n_epochs", str(args.n_epochs), "--n_epochs_decay", str(args.n_epochs_decay),
                "--save_epoch_freq", str(max(1, epochs // 4)), "--optimizer", arm.optimizer, "--lr", f"{arm.lr:.6g}",
                "--beta1", str(args.beta1), "--tr_lambda", str(args.tr_lambda), "--tr_period", str(args.tr_period),
                "--tr_mode", args.tr_mode, "--seed", str(seed), "--device", args.device,
                *shlex.split(args.train_args)], [checkpoints / name], pairs_step,
                resume=(checkpoints / name / "training_state.pth", "--continue_train")))
            steps.append(Step(f"test_{name}", f"test {arm.spec} seed {seed}", [
                py, "test.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(checkpoints),
                "--results_dir", str(results), "--device", args.device, "--seed", str(seed),
                *(["--eval"] if args.test_eval else [])], [results / name / "val_latest"],
                [f"train_{name}", *pairs_step]))
    scorer_step: dict[str, list[str]] = {}
    if not args.scorer:
        for sname, path in scorers.items():
            cmd = [py, "-m", "evaluation.train_scorer", "--cityscapes_dir", str(city), "--output", str(path),
                   "--arch", args.scorer_arch, "--image_size", str(args.size), "--seed", sname.split("seed")[1],
                   "--device", args.device, "--no_eval", "--no_progress"]
            if args.scorer_epochs:
                cmd += ["--epochs", str(args.scorer_epochs)]
            if args.scorer_base:
                cmd += ["--base", str(args.scorer_base)]
            state = path.with_name(path.stem + ".train_state.pth")  # evaluation.train_scorer.train_state_path
            steps.append(Step(f"scorer_{sname}", f"train {sname}", cmd,
                              [path, state, path.with_name(path.stem + "_gt")], city_step,
                              resume=(state, "--resume")))
            scorer_step[sname] = [f"scorer_{sname}"]
    for sname, path in scorers.items():
        common = ["--cityscapes_dir", str(city), "--scorer", str(path), "--protocol", args.protocol,
                  "--device", args.device, "--no_progress"]
        reads = [*scorer_step.get(sname, []), *city_step]
        steps.append(Step(f"fcn_{sname}_GT", f"FCN-score GT ({sname})", [
            py, "-m", "evaluation.fcn_score", "--real", "--real_size", str(args.size), "--label", "GT",
            "--output_dir", str(fcn / sname / "GT"), *common], [fcn / sname / "GT"], reads))
        for seed in args.seeds:
            for arm in args.arm_list:
                name = run_name(arm, seed)
                steps.append(Step(f"fcn_{sname}_{name}", f"FCN-score {arm.spec} seed {seed} ({sname})", [
                    py, "-m", "evaluation.fcn_score", "--result_dir", str(results / name / "val_latest"),
                    "--label", arm.label, "--output_dir", str(fcn / sname / name), *common],
                    [fcn / sname / name], [*reads, f"test_{name}"]))
    publish = Path(args.publish).resolve() if args.publish else out
    first = args.seeds[0]
    steps.append(Step("gallery", "gallery", [
        py, "-m", "pix2pix_tr.report.compare", *[str(results / run_name(a, first) / "val_latest") for a in args.arm_list],
        "--labels", *[a.label for a in args.arm_list], "--output", str(publish / "gallery"), "--copy", "--title",
        f"labels->photo, seed {first}: " + " vs ".join(a.label for a in args.arm_list)], [], always=True))
    return steps


def run_steps(steps: Sequence[Step], *, force: bool = False, dry_run: bool = False, out: Path) -> list[dict]:
    """Run what a rerun needs (:mod:`pix2pix_tr.steps`: the same command finished is skipped, an interrupted one
    continues or starts over, new settings are refused unless ``force``); returns the log of every step run so
    far (kept in ``OUT/steps.json``, so the times of an interrupted comparison's earlier steps survive the
    rerun). Raises :class:`StepRefused` before anything runs, :class:`StepFailed` when a command fails."""
    decisions = steps_plan(steps, out, force=force)
    log_file = out / "steps.json"
    log = json.loads(log_file.read_text()) if log_file.is_file() else []
    return execute(decisions, out, dry_run=dry_run, log=log, cwd=ROOT, program="the same gan_compare command",
                   on_log=lambda entries: atomic_write_text(log_file, json.dumps(entries, indent=1) + "\n"))


def collect_scores(fcn: Path, arms: Sequence[Arm], seeds: Sequence[int], scorers: Sequence[str]) -> dict:
    """``{"GT": {scorer: {metric: v}}, arm.label: {scorer: {seed: {metric: v}}}}`` from the fcn_score JSONs."""
    def read(folder: Path) -> dict:
        result = json.loads((folder / "evaluation_results.json").read_text())
        scores = {k: result["scores"][k] for k in METRICS}
        for k in ("psnr_mean", "ssim_mean"):
            if result.get(k) is not None:
                scores[k] = result[k]
        return scores

    table = {"GT": {s: read(fcn / s / "GT") for s in scorers}}
    for arm in arms:
        table[arm.label] = {s: {str(seed): read(fcn / s / run_name(arm, seed)) for seed in seeds} for s in scorers}
    return table


def summarize(scores: dict, arms: Sequence[Arm], seeds: Sequence[int], scorers: Sequence[str]) -> dict:
    """Per arm and metric: mean over seeds (each seed averaged over scorers) with a bootstrap CI over seeds,
    the paired difference to the first arm, and the scorer spread (mean over runs of max - min across scorers)."""
    base = arms[0].label
    out: dict = {"GT": {}, "arms": {}}
    for m in METRICS:
        gt = [scores["GT"][s][m] for s in scorers]
        out["GT"][m] = {"mean": float(np.mean(gt)), "per_scorer": dict(zip(scorers, gt)),
                        "scorer_spread": float(max(gt) - min(gt))}

    def per_seed(label: str, m: str) -> list[float]:
        return [float(np.mean([scores[label][s][str(seed)][m] for s in scorers])) for seed in seeds]

    for arm in arms:
        row = {}
        keys = [m for m in (*METRICS, "psnr_mean", "ssim_mean") if m in scores[arm.label][scorers[0]][str(seeds[0])]]
        for m in keys:
            values = per_seed(arm.label, m)
            entry = {"per_seed": values, **stats.bootstrap_ci(values)}
            if m in METRICS:
                spreads = [max(scores[arm.label][s][str(seed)][m] for s in scorers)
                           - min(scores[arm.label][s][str(seed)][m] for s in scorers) for seed in seeds]
                entry["scorer_spread"] = float(np.mean(spreads))
                entry["per_scorer_mean"] = {s: float(np.mean([scores[arm.label][s][str(seed)][m] for seed in seeds]))
                                            for s in scorers}
            if arm.label != base:
                entry["diff_to_base"] = stats.paired_difference(values, per_seed(base, m))
            row[m] = entry
        out["arms"][arm.label] = row
    return out


def markdown_table(summary: dict, arms: Sequence[Arm], n_seeds: int, scorers: Sequence[str]) -> str:
    base = arms[0].label
    lines = [f"FCN-score, mean over {n_seeds} training seed(s) of the mean over {len(scorers)} scorer(s) "
             f"({', '.join(scorers)}); [95% bootstrap interval over seeds]. Paired Δ = arm − {base} on the same "
             f"seed; **resolved** when its interval excludes 0. Scorer spread = mean over runs of (max − min) "
             f"across scorers.", ""]
    heads = [METRIC_TITLES[m] for m in METRICS]
    lines += ["| Method | " + " | ".join(heads) + " | PSNR (dB) | SSIM |", "|---" * (len(heads) + 3) + "|"]
    gt = summary["GT"]
    lines.append("| GT (real photos) | " + " | ".join(f"{gt[m]['mean']:.3f}" for m in METRICS) + " | | |")
    for arm in arms:
        row = summary["arms"][arm.label]
        cells = [stats.fmt_ci(row[m], 3) for m in METRICS]
        cells += [stats.fmt_ci(row[m], 2 if m == "psnr_mean" else 3) if m in row else ""
                  for m in ("psnr_mean", "ssim_mean")]
        lines.append(f"| {arm.label} | " + " | ".join(cells) + " |")
    if len(arms) > 1:
        lines += ["", f"Paired difference to {base} (same seed):", "",
                  "| Method | " + " | ".join(f"Δ {h}" for h in heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for arm in arms[1:]:
            row = summary["arms"][arm.label]
            cells = [stats.fmt_ci(row[m]["diff_to_base"], 3, signed=True)
                     + (" **resolved**" if row[m]["diff_to_base"]["resolved"] else "") for m in METRICS]
            lines.append(f"| {arm.label} − {base} | " + " | ".join(cells) + " |")
    if len(scorers) > 1:
        lines += ["", "What the scorer alone moves: each scorer's mean, and the spread between scorers.", "",
                  "| Method | " + " | ".join(f"{h}: " + " / ".join(scorers) + " (spread)" for h in heads) + " |",
                  "|---" * (len(heads) + 1) + "|"]
        lines.append("| GT | " + " | ".join(
            " / ".join(f"{gt[m]['per_scorer'][s]:.3f}" for s in scorers) + f" ({gt[m]['scorer_spread']:.3f})"
            for m in METRICS) + " |")
        for arm in arms:
            row = summary["arms"][arm.label]
            lines.append(f"| {arm.label} | " + " | ".join(
                " / ".join(f"{row[m]['per_scorer_mean'][s]:.3f}" for s in scorers) + f" ({row[m]['scorer_spread']:.3f})"
                for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    steps = plan(args)
    out = Path(args.out).resolve()
    try:
        log = run_steps(steps, force=args.force, dry_run=args.dry_run, out=out)
    except StepRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.returncode if exc.returncode in (1, 2, 3) else 1
    if args.dry_run:
        return 0
    publish = Path(args.publish).resolve() if args.publish else out
    scorers = list(scorer_paths(args))
    scores = collect_scores(out / "fcn", args.arm_list, args.seeds, scorers)
    summary = summarize(scores, args.arm_list, args.seeds, scorers)
    table = markdown_table(summary, args.arm_list, len(args.seeds), scorers)
    settings = {k: v for k, v in vars(args).items() if k not in ("arm_list", "out", "publish", "dry_run", "force")}
    if args.cityscapes_dir:
        settings["cityscapes_dir"] = Path(args.cityscapes_dir).name
    if args.scorer:
        settings["scorer"] = [Path(s).name for s in args.scorer]
    record = dict(command="python -m experiments.gan_compare " + " ".join(
                      shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])).replace(str(out), "$OUT"),
                  settings=settings, arms={a.label: {"optimizer": a.optimizer, "lr": a.lr} for a in args.arm_list},
                  seeds=args.seeds, scorers=scorers, steps=log, scores=scores, summary=summary,
                  files={"table": "table.md", "gallery": "gallery/index.html"})
    publish.mkdir(parents=True, exist_ok=True)
    atomic_write_text(publish / "table.md", table)
    atomic_write_text(publish / "results.json", json.dumps(record, indent=1, default=str) + "\n")
    print("\n" + table)
    print(f"gallery: {publish / 'gallery' / 'index.html'}\nresults: {publish / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
