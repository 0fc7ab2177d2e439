"""Train the FCN-score's scorer on the user's own Cityscapes photos (no weights are downloaded).

The recipe follows the pix2pix evaluation: learn at the GAN's resolution, i.e. every
``leftImg8bit/train/{city}/*_leftImg8bit.png`` photo is resized (bicubic) to ``image_size`` x ``image_size``
(squashed, as pix2pix prepares its A|B pairs) and its ``gtFine_labelIds`` map is resized nearest-neighbour to the
same size and mapped to the 19 train ids (255 = ignored by the loss). Random horizontal flips; cross-entropy;
a poly learning-rate decay ``lr * (1 - it / total) ** 0.9`` over all iterations. All photos are decoded and
resized once, up front, and kept in memory as uint8 (about 0.8 GB for the 2975 real train frames at 256).

At the end the scorer labels the val photos resized the same way and compares at ``image_size`` (the ``256``
protocol of :mod:`evaluation.fcn_score`): that is the "GT" row of the paper's table, the score real photos get.
Its reports go to ``{output stem}_gt/`` (pass that folder to ``compare_runs``).

Files:

* ``--output scorer.pth``: the scorer checkpoint (see :mod:`evaluation.scorer`), rewritten atomically every
  ``--save_every`` epochs, so an interrupted run leaves a usable scorer;
* ``scorer.train_state.pth`` beside it: optimizer, scheduler and RNG state for ``--resume``.

Reruns: without ``--resume`` an existing ``--output``, its state or its ``_gt/`` report is refused; ``--resume``
continues exactly (and removes the ``_gt/`` report of the scorer it is about to change; it is rewritten at the end
unless ``--no_eval``). Nothing is written into ``--cityscapes_dir`` or into another tool's output folder.

Divergence: a NaN/inf loss stops training before the update, NaN/inf weights or batch-norm statistics are checked
before every save; either ends the command with exit status 1 and advice (a lower ``--lr``) that works as
written. A non-finite scorer is never written.

Command line::

    python -m evaluation.train_scorer --cityscapes_dir DIR --output scorer.pth \\
        [--arch fcn8s_vgg16_bn] [--epochs N] [--batch_size 8] [--lr LR] [--image_size 256] [--device auto] \\
        [--resume] [--num_workers 4]

Recipes measured here: see ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.common import (DivergedError, EvaluationError, ScorerCheckpointError, check_float, check_int,
                               check_output_apart, check_output_dir_usable, list_label_frames, load_rgb,
                               load_train_ids, parse_image_size, photo_path, require_cityscapes_split,
                               resolve_device, run_cli)
from evaluation.reports import (REPORT_HTML, RESULTS_JSON, RESULTS_TXT, SAMPLES_DIR,
                                remove_stale_samples)
from evaluation.labels import IGNORE_INDEX, TRAIN_CLASS_NAMES
from evaluation.scorer import ARCHITECTURES, DEFAULT_MEAN, DEFAULT_STD, build_scorer, scorer_checkpoint
from pix2pix_tr.io import atomic_torch_save

#: Default epochs per architecture: the small one is for CPUs and tiny sets, the big ones for real Cityscapes.
DEFAULT_EPOCHS = {"fcn8s_small": 15, "fcn8s_vgg16": 100, "fcn8s_vgg16_bn": 60, "fcn_resnet50": 60,
                  "deeplabv3_resnet50": 60}
STATE_FORMAT = "pix2pix_tr.fcn_scorer_train_state"
#: |--seed| limit: the per-epoch generator is seeded with ``seed * 100003 + epoch``, which must fit in 64 bits.
SEED_LIMIT = 2 ** 40


def train_state_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".train_state.pth")


def gt_report_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + "_gt")


def load_split(cityscapes_dir: Path, split: str, image_size: int, *, max_frames: int | None = None,
               num_workers: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Photos ``(N, S, S, 3)`` uint8 and train ids ``(N, S, S)`` uint8 of a split, resized to ``image_size``."""
    labels = list_label_frames(cityscapes_dir, split)
    if not labels:
        raise EvaluationError(f"--cityscapes_dir {cityscapes_dir}/gtFine/{split} holds no *_gtFine_labelIds.png")
    frames = sorted(labels)[:max_frames] if max_frames else sorted(labels)
    missing = [f for f in frames if not photo_path(cityscapes_dir, split, f).is_file()]
    if missing:
        raise EvaluationError(f"{len(missing)} label map(s) in {cityscapes_dir}/gtFine/{split} have no photo in "
                              f"leftImg8bit/{split}: {', '.join(missing[:10])}")
    size = (image_size, image_size)

    def load(frame: str):
        photo = load_rgb(photo_path(cityscapes_dir, split, frame)).resize(size, Image.BICUBIC)
        return np.asarray(photo), load_train_ids(labels[frame], size=size)

    from tqdm import tqdm

    photos = np.empty((len(frames), image_size, image_size, 3), np.uint8)
    targets = np.empty((len(frames), image_size, image_size), np.uint8)
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        for i, (p, t) in enumerate(tqdm(pool.map(load, frames), total=len(frames), disable=not progress,
                                        desc=f"loading {split}", unit="frame")):
            photos[i], targets[i] = p, t
    return photos, targets, frames


def _normalize(batch_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    x = batch_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _make_optimizer(name: str, params, lr: float, weight_decay: float):
    if name == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise EvaluationError(f"--optimizer {name!r} is not one of adam, sgd")


def train_scorer(cityscapes_dir: str | Path, output: str | Path, *, arch: str = "fcn8s_small",
                 epochs: int | None = None, image_size: int = 256, batch_size: int = 8, lr: float | None = None,
                 optimizer: str | None = None, weight_decay: float | None = None, device: str | None = "auto",
                 resume: bool = False, num_workers: int = 0, seed: int = 0, arch_kwargs: dict | None = None,
                 max_frames: int | None = None, save_every: int = 1, evaluate: bool = True,
                 eval_protocol: str = "256", amp: str = "none", progress: bool = True) -> dict:
    """Train a scorer; write ``output`` (and its resume state); score the val photos (the GT row).

    ``lr``, ``optimizer`` (``adam`` = AdamW, or ``sgd`` with momentum 0.9) and ``weight_decay`` default to the
    architecture's recipe in :data:`evaluation.scorer.ARCHITECTURES`; ``epochs`` to :data:`DEFAULT_EPOCHS`.
    ``resume=True`` continues from ``{output stem}.train_state.pth``: arch, image size, batch size, optimizer,
    lr, weight decay and the number of train frames must be the ones it was started with; ``epochs`` may be
    raised (the poly decay is then stretched over the new length from where it stands).
    ``max_frames`` uses only the first N train frames (sorted by name). ``evaluate=False`` skips the val score.
    ``amp="bf16"`` runs the forward pass under bfloat16 autocast (a large speed-up on recent GPUs; the loss and
    the weights stay float32).

    Returns ``{"output", "epochs_done", "train_frames", "history": [{"epoch", "loss", "pixel_acc",
    "seconds"}], "train_seconds", "gt": fcn_score results dict or None}``.
    """
    if arch not in ARCHITECTURES:
        raise EvaluationError(f"--arch {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    image_size = parse_image_size(image_size)
    epochs = DEFAULT_EPOCHS[arch] if epochs is None else int(epochs)
    if epochs < 1:
        raise EvaluationError(f"--epochs {epochs} must be at least 1")
    check_int(batch_size, "--batch_size", 1, "at least 1")
    if amp not in ("none", "bf16"):
        raise EvaluationError(f"--amp {amp!r} is not one of none, bf16")
    lr = spec.lr if lr is None else float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise EvaluationError(f"--lr {lr} must be positive and finite")
    optimizer = optimizer or spec.optimizer
    weight_decay = spec.weight_decay if weight_decay is None else check_float(weight_decay, "--weight_decay",
                                                                                positive=False)
    check_int(save_every, "--save_every", 0, "0 (save at the end only) or more")
    check_int(num_workers, "--num_workers", 0, "0 or more")
    if check_int(seed, "--seed", -SEED_LIMIT, f"an integer between -{SEED_LIMIT} and {SEED_LIMIT}") > SEED_LIMIT:
        raise EvaluationError(f"--seed {seed} must be an integer between -{SEED_LIMIT} and {SEED_LIMIT}")
    if max_frames is not None:
        check_int(max_frames, "--max_frames", 1, "at least 1 (leave it out to use every frame)")
    output = Path(output)
    if output.suffix != ".pth":
        raise EvaluationError(f"--output {output} should end in .pth (it is a torch checkpoint)")
    if output.is_dir():
        raise EvaluationError(f"--output {output} is a folder; give a file name such as {output}/scorer.pth")
    state_path = train_state_path(output)
    cityscapes_dir = require_cityscapes_split(cityscapes_dir, "train")
    if evaluate:
        require_cityscapes_split(cityscapes_dir, "val")
    # Nothing is written onto the data or into another tool's output folder; the GT report is an fcn_score folder.
    check_output_apart(output, flag="--output", input_dirs={"--cityscapes_dir": cityscapes_dir}, folder=False,
                       writes=[state_path])
    check_output_apart(gt_report_dir(output), flag="--output (its GT report folder)",
                       input_dirs={"--cityscapes_dir": cityscapes_dir}, own=(RESULTS_JSON,))
    check_output_dir_usable(output.parent, flag="--output")
    dev = resolve_device(device)
    arch_kwargs = {**spec.default_kwargs, **(arch_kwargs or {})}
    # Seed before the weights are initialised; a resumed run then loads its weights and the RNG stream it saved.
    torch.manual_seed(seed)
    try:
        model = build_scorer(arch, len(TRAIN_CLASS_NAMES), **arch_kwargs).to(dev)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)

    photos, targets, frames = load_split(cityscapes_dir, "train", image_size, max_frames=max_frames,
                                         num_workers=num_workers, progress=progress)
    n = len(frames)
    # A last batch of one image would break batch norm in training mode (deeplabv3's image pooling): drop it.
    iters_per_epoch = n // batch_size if (n % batch_size == 1 and n > batch_size) else math.ceil(n / batch_size)
    total_iters = epochs * iters_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: max(0.0, 1.0 - it / total_iters) ** 0.9)
    start_epoch, history = 0, []
    recipe = {"arch": arch, "arch_kwargs": arch_kwargs, "image_size": image_size, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "weight_decay": weight_decay, "seed": seed,
              "train_frames": n, "cityscapes_dir": str(cityscapes_dir), "amp": amp}
    gt_dir = gt_report_dir(output)
    if resume:
        start_epoch, history = _resume(state_path, recipe, model, opt, sched)
        if start_epoch < epochs:
            _remove_gt_report(gt_dir, progress)  # it describes the scorer before these epochs
    elif output.exists() or state_path.exists():
        raise EvaluationError(f"--output {output} (or its {state_path.name}) already exists; pass --resume to "
                              f"continue that run, or choose another --output")
    elif gt_dir.exists():
        raise EvaluationError(f"--output {output}: the folder {gt_dir} (the GT report of an earlier scorer of that "
                              f"name) already exists; remove it, or choose another --output")

    photos_t = torch.from_numpy(photos)
    targets_t = torch.from_numpy(targets)
    if dev.type == "cuda":
        photos_t, targets_t = photos_t.to(dev), targets_t.to(dev)  # small enough: batches are gathered on the GPU
    mean, std = DEFAULT_MEAN, DEFAULT_STD
    from tqdm import tqdm

    t_start = time.perf_counter()
    epoch = start_epoch
    saved_epochs = start_epoch  # what OUTPUT holds now (0: nothing saved)
    for epoch in range(start_epoch, epochs):
        model.train()
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(n, generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        t0 = time.perf_counter()
        loss_sum, correct, counted, seen = 0.0, 0, 0, 0
        bar = tqdm(range(iters_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not progress,
                   leave=False)
        for it in bar:
            idx = order[it * batch_size:(it + 1) * batch_size]
            flip = flips[idx].to(photos_t.device)
            idx = idx.to(photos_t.device)
            x, y = photos_t[idx], targets_t[idx]
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
            y = torch.where(flip.view(-1, 1, 1), y.flip(2), y)
            x = _normalize(x.to(dev, non_blocking=True), mean, std)
            y = y.to(dev, non_blocking=True).long()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):  # stop before the bad update
                raise _diverged(f"the loss became {loss_value} at epoch {epoch + 1}, iteration {it + 1}", output,
                                saved_epochs, lr, spec.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                valid = y != IGNORE_INDEX
                correct += int((logits.argmax(1)[valid] == y[valid]).sum())
                counted += int(valid.sum())
            loss_sum += loss_value * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_value:.3f}")
        bar.close()
        record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "pixel_acc": correct / max(counted, 1),
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, train pixel acc {record['pixel_acc']:.3f}, "
                  f"{record['seconds']:.1f} s", flush=True)
        bad = _non_finite(model)  # the loss can stay finite while weights or BN statistics run off to inf
        if bad:
            raise _diverged(f"{bad} weights or buffers became NaN/inf in epoch {epoch + 1}", output, saved_epochs, lr,
                            spec.lr)
        last = epoch + 1 == epochs
        if last or (save_every > 0 and (epoch + 1) % save_every == 0):
            _save(output, state_path, model, opt, sched, recipe, epoch + 1, history, finished=last)
            saved_epochs = epoch + 1
    train_seconds = time.perf_counter() - t_start
    if start_epoch >= epochs:
        _save(output, state_path, model, opt, sched, recipe, epochs, history, finished=True)
    del photos_t, targets_t

    gt = None
    if evaluate:
        from evaluation.fcn_score import fcn_score

        gt = fcn_score(None, cityscapes_dir, output, gt_report_dir(output), protocol=eval_protocol, real=True,
                       eval_size=image_size, real_size=image_size, batch_size=batch_size, device=str(dev),
                       num_workers=0, label="GT", progress=progress)
    return {"output": str(output), "epochs_done": max(epochs, start_epoch), "train_frames": n, "history": history,
            "train_seconds": train_seconds, "gt": gt}


def _non_finite(model: torch.nn.Module) -> int:
    """How many values of the model's weights and buffers are NaN/inf (one reduction per tensor)."""
    return sum(int((~torch.isfinite(t)).sum()) for t in model.state_dict().values() if t.is_floating_point())


def _diverged(what: str, output: Path, saved_epochs: int, lr: float, recipe_lr: float) -> DivergedError:
    """The one-sentence divergence report, with advice that works as written (``--resume`` would refuse another
    ``--lr``, so a saved scorer is kept and the new run goes to another ``--output``). The lr suggested is a tenth
    of this one, and never above the architecture's recipe (a tenth of 1e30 would diverge too)."""
    lower = f"{min(lr / 10, recipe_lr):g}"
    if saved_epochs:
        advice = (f"{output} still holds the scorer saved after epoch {saved_epochs}; to train again with a lower "
                  f"learning rate, run the same command with --lr {lower} and another --output")
    else:
        advice = f"run the same command again with a lower learning rate, e.g. --lr {lower}"
    return DivergedError(f"train_scorer diverged: {what}; nothing non-finite was saved; {advice}")


def _remove_gt_report(gt_dir: Path, progress: bool) -> None:
    """Remove the GT report (an fcn_score folder) of the scorer a resumed run is about to change: its own files
    only, then the folder if nothing else is left in it."""
    if not gt_dir.is_dir():
        return
    for name in (RESULTS_JSON, RESULTS_TXT, REPORT_HTML):
        (gt_dir / name).unlink(missing_ok=True)
    remove_stale_samples(gt_dir, set())
    for folder in (gt_dir / SAMPLES_DIR, gt_dir):
        with contextlib.suppress(OSError):
            folder.rmdir()
    if progress:
        print(f"removed the GT report {gt_dir} of the scorer before this resume (rewritten at the end unless "
              f"--no_eval)", flush=True)


def _save(output: Path, state_path: Path, model, opt, sched, recipe: dict, epochs_done: int, history: list,
          finished: bool) -> None:
    train_info = {**recipe, "epochs_done": epochs_done, "finished": finished, "history": history}
    ckpt = scorer_checkpoint(model, arch=recipe["arch"], arch_kwargs=recipe["arch_kwargs"],
                             image_size=recipe["image_size"], mean=DEFAULT_MEAN, std=DEFAULT_STD, train=train_info)
    atomic_torch_save({"format": STATE_FORMAT, "recipe": recipe, "epochs_done": epochs_done, "history": history,
                       "model": ckpt["state_dict"], "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "torch_rng": torch.get_rng_state()}, state_path)
    atomic_torch_save(ckpt, output)


_MUST_MATCH = ("arch", "arch_kwargs", "image_size", "batch_size", "optimizer", "lr", "weight_decay", "train_frames")


def _resume(state_path: Path, recipe: dict, model, opt, sched) -> tuple[int, list]:
    if not state_path.is_file():
        raise ScorerCheckpointError(f"--resume needs {state_path}, which does not exist; run without --resume to "
                                    f"start training")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from pix2pix_tr.safe_load import describe_load_error

        raise ScorerCheckpointError(f"the training state {state_path} is not a checkpoint we can load safely: "
                                    f"{describe_load_error(exc)}; delete it and the scorer file beside it, then run "
                                    f"without --resume to start over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ScorerCheckpointError(f"{state_path} is not a train_scorer training state")
    saved = state["recipe"]
    diffs = [f"{k} {saved.get(k)!r} (now {recipe[k]!r})" for k in _MUST_MATCH if saved.get(k) != recipe[k]]
    if diffs:
        raise ScorerCheckpointError(f"--resume: {state_path} was trained with {', '.join(diffs)}; pass the same "
                                    f"settings or start a new --output")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epochs_done"]), list(state["history"])


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.train_scorer", description=__doc__.split("\n\n")[0])
    p.add_argument("--cityscapes_dir", required=True, help="Cityscapes root with leftImg8bit/ and gtFine/")
    p.add_argument("--output", required=True, help="scorer checkpoint to write, e.g. scorer.pth")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default="fcn8s_small",
                   help="scorer network (default fcn8s_small; fcn8s_vgg16 is the paper's)")
    p.add_argument("--base", type=int, default=None, help="fcn8s_small only: width of the first stage (16)")
    p.add_argument("--epochs", type=int, default=None, help="default depends on --arch (fcn8s_small: 15)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=None, help="default depends on --arch")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="default depends on --arch")
    p.add_argument("--weight_decay", type=float, default=None)
    p.add_argument("--image_size", default="256", help="square training size (default 256, the paper's)")
    p.add_argument("--max_frames", type=int, default=None, help="use only the first N train frames")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT's .train_state.pth")
    p.add_argument("--save_every", type=int, default=1,
                   help="checkpoint every N epochs (default 1; 0: only at the end)")
    p.add_argument("--num_workers", type=int, default=4, help="threads decoding and resizing photos up front")
    p.add_argument("--amp", choices=("none", "bf16"), default="none", help="bf16 autocast for the forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_eval", action="store_true", help="skip the final score on the val photos")
    p.add_argument("--no_progress", action="store_true", help="no progress bars or per-epoch lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    arch_kwargs: dict[str, Any] = {}
    if args.base is not None:
        if args.arch != "fcn8s_small":
            raise EvaluationError(f"--base only applies to --arch fcn8s_small, not {args.arch}")
        arch_kwargs["base"] = args.base
    result = train_scorer(args.cityscapes_dir, args.output, arch=args.arch, epochs=args.epochs,
                          image_size=args.image_size, batch_size=args.batch_size, lr=args.lr,
                          optimizer=args.optimizer, weight_decay=args.weight_decay, device=args.device,
                          resume=args.resume, num_workers=args.num_workers, seed=args.seed, arch_kwargs=arch_kwargs,
                          max_frames=args.max_frames, save_every=args.save_every, evaluate=not args.no_eval,
                          amp=args.amp,
                          progress=not args.no_progress)
    print(f"scorer written to {result['output']} ({result['epochs_done']} epochs on {result['train_frames']} frames, "
          f"{result['train_seconds']:.0f} s)")
    gt = result["gt"]
    if gt is not None:
        s, b = gt["scores"], gt["majority_baseline"]
        print(f"GT row (real val photos at {gt['eval_size']}x{gt['eval_size']}, {gt['num_frames']} frames): per-pixel "
              f"acc {s['per_pixel_acc']:.3f}, per-class acc {s['per_class_acc']:.3f}, class IoU {s['class_iou']:.3f}; "
              f"majority class ({b['class_name']}): {b['per_pixel_acc']:.3f} / {b['per_class_acc']:.3f} / "
              f"{b['class_iou']:.3f}; reports in {gt_report_dir(result['output'])}")
    return 0


def command() -> int:
    """The installed command ``pix2pix-tr-train-scorer`` (= ``python -m evaluation.train_scorer``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(command())
