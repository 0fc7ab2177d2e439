"""test.py: run a trained generator over a split and write the images, an HTML gallery and ``results.json``.

``python test.py --dataroot cityscapes --name NAME`` does, in order:

1. take every network/data option the user did not pass (``--netG --ngf --norm --input_nc --output_nc
   --no_dropout --direction --preprocess --crop_size ...``) from training: ``checkpoints/NAME/train_opt.json``,
   else the ``train_opt.txt`` the official pix2pix (and our train.py) writes, else the command line alone
   (``--direction`` then required); it prints which source it used (:mod:`pix2pix_tr.inference.checkpoint`);
2. load ``checkpoints/NAME/{epoch}_net_G.pth`` with ``torch.load(weights_only=True)`` (a plain state_dict;
   nothing in it is executed; ours or the official pix2pix's, with or without BatchNorm's
   ``num_batches_tracked``); if its keys or shapes do not fit the built generator, say which options to change
   (read off the checkpoint's own keys and shapes);
3. run the generator over ``DATAROOT/{phase}`` (``val`` by default; the first ``--num_test`` images in file
   name order, all by default) in batches of ``--batch_size``, on ``--device``, with a progress bar;
4. write ``results/NAME/{phase}_{epoch}/images/{stem}_real_A.png``, ``_fake_B.png``, ``_real_B.png`` (the
   stem is the input's file name, so Cityscapes frame names such as ``frankfurt_000000_000294`` survive and the
   FCN-score can find the ground truth), ``index.html`` (+ ``index_2.html``... 50 rows per page) and
   ``results.json`` (stems, epoch, every option, the training options).

Preprocessing is deterministic: no flip, and ``--load_size`` defaults to ``--crop_size`` so that
``resize_and_crop`` is a plain resize (pix2pix's test options do the same).

Train mode vs ``--eval``. The original pix2pix tests in *train* mode by default: BatchNorm normalises with the
statistics of the test batch itself and dropout stays active (dropout is the only noise source of pix2pix's
generator). ``--eval`` switches to eval mode: BatchNorm uses the running statistics accumulated in training and
dropout is off, so the output for an image does not depend on the other images of its batch. Both are kept;
without ``--eval`` use ``--batch_size 1`` (the default) to reproduce pix2pix, because with larger batches the
BatchNorm statistics mix images. Dropout masks come from ``--seed``, so a train-mode run is reproducible too.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from pix2pix_tr.cli import json_clean, resolve_device, run_cli
from pix2pix_tr.inference.checkpoint import (InferenceError, build_generator, checkpoint_path, generator_options,
                                             load_state_dict, network_options)
from pix2pix_tr.io import atomic_save_image, atomic_write_text
from pix2pix_tr.paths import PathError, check_no_overlap, ensure_writable_dir, join_name
from pix2pix_tr.safe_load import NonFiniteStateError
from pix2pix_tr.report.gallery import VISUALS, image_file_name, write_results_gallery
from pix2pix_tr.report.images import tensor_to_image

__all__ = ["optimizer_summary", "run_header", "run_test", "main"]


# ------------------------------------------------------------------------------------------------ the run
def _resolve_dataroot(dataroot: str | os.PathLike) -> Path:
    from pix2pix_tr.data import resolve_dataroot

    try:
        return Path(resolve_dataroot(dataroot))
    except (FileNotFoundError, ValueError) as exc:
        raise InferenceError(str(exc)) from exc


def optimizer_summary(train_opt: Mapping[str, Any]) -> str:
    """``tradam (lr 0.0002, beta1 0.5, lambda 0.1, S 10, paper)``-style one-liner of the training optimizer."""
    name = train_opt.get("optimizer")
    if name is None:
        return "not recorded in the options"
    parts = [f"lr {train_opt.get('lr')}"]
    if str(name).endswith("adam"):
        parts += [f"beta1 {train_opt.get('beta1')}", f"beta2 {train_opt.get('beta2')}"]
    else:
        parts.append(f"momentum {train_opt.get('beta1')}")
    if str(name).startswith("tr"):
        parts += [f"lambda {train_opt.get('tr_lambda')}", f"S {train_opt.get('tr_period')}",
                  f"mode {train_opt.get('tr_mode')}"]
        if train_opt.get("no_tr_inner_decay"):
            parts.append("no inner decay")
    return f"{name} ({', '.join(parts)})"


def run_header(name: str, epoch: str, phase: str, train_opt: Mapping[str, Any], gen: Mapping[str, Any], *,
               eval_mode: bool, n_images: int, checkpoint: str, date: str, data: str = "") -> dict[str, str]:
    """The key/value table on top of the result pages (also used by the comparison page)."""
    return {
        "run": name,
        "epoch": str(epoch),
        "phase": phase,
        "optimizer": optimizer_summary(train_opt),
        "training": ", ".join(f"{k} {train_opt[k]}" for k in ("batch_size", "n_epochs", "n_epochs_decay",
                                                              "lr_policy", "gan_mode", "lambda_L1")
                              if k in train_opt) or "-",
        "generator": f"{gen['netG']}, ngf {gen['ngf']}, norm {gen['norm']}, "
                     f"{'dropout' if gen['use_dropout'] else 'no dropout'}, {gen['input_nc']}->{gen['output_nc']} ch",
        "test mode": "eval (--eval: running BN statistics, no dropout)" if eval_mode
                     else "train (pix2pix default: batch BN statistics, dropout on)",
        "data": data or "-",
        "images": str(n_images),
        "checkpoint": checkpoint,
        "date": date,
    }


def run_test(opt: argparse.Namespace, *, train_opt: Mapping[str, Any] | None = None, per_page: int = 50,
             progress: bool = True) -> dict[str, Any]:
    """Run test.py for the parsed options ``opt`` (as :func:`pix2pix_tr.options.parse_test` returns them).

    ``train_opt`` defaults to the experiment's ``train_opt.json``. Returns the content of ``results.json``
    (plus ``run_dir``). Raises InferenceError with a one-sentence message on bad input.
    """
    from pix2pix_tr.options import merge_test_options

    ckpt_dir = join_name(opt.checkpoints_dir, opt.name)
    if train_opt is None:
        train_opt, options_source = network_options(ckpt_dir, opt)
    else:
        options_source = "the train_opt given to run_test"
    train_opt = dict(train_opt)

    load_size_given = getattr(opt, "load_size", None) is not None
    opt = merge_test_options(opt, train_opt)
    if not load_size_given:
        opt.load_size = opt.crop_size  # resize_and_crop becomes a plain resize: no random crop at test time
    opt.no_flip = True
    gen = generator_options(opt)
    from pix2pix_tr.models import GENERATORS, NORMS, required_multiple

    for key, allowed in (("netG", GENERATORS), ("norm", NORMS)):
        if gen[key] not in allowed:
            raise InferenceError(f"cannot build the generator: unknown {key} {gen[key]!r} (from "
                                 f"{options_source}): pass --{key} with one of {', '.join(allowed)}")

    multiple = required_multiple(gen["netG"])
    if opt.preprocess != "none" and opt.crop_size % multiple:
        raise InferenceError(f"--netG {gen['netG']} needs inputs whose side is a multiple of {multiple}, but "
                             f"--crop_size is {opt.crop_size}: pass --crop_size {multiple} (or a multiple of it)")

    device = resolve_device(getattr(opt, "device", "auto"), InferenceError)
    path = checkpoint_path(ckpt_dir, opt.epoch)
    state = load_state_dict(path)
    net = build_generator(gen, state, source=str(path), options_source=options_source).to(device)
    print(f"network options from {options_source}: {gen['netG']}, ngf {gen['ngf']}, norm {gen['norm']}, "
          f"{'dropout' if gen['use_dropout'] else 'no dropout'}, {gen['input_nc']}->{gen['output_nc']} channels, "
          f"{opt.direction}")
    eval_mode = bool(getattr(opt, "eval", False))
    net.eval() if eval_mode else net.train()
    if not eval_mode and opt.batch_size > 1 and gen["norm"] == "batch":
        print(f"note: train-mode testing with --batch_size {opt.batch_size}: BatchNorm statistics are shared by "
              f"the images of a batch; pass --eval or --batch_size 1 for per-image results", file=sys.stderr)

    root = _resolve_dataroot(opt.dataroot)
    if not (root / opt.phase).is_dir():
        raise InferenceError(f"{root / opt.phase} does not exist: --phase {opt.phase} needs a {opt.phase}/ folder of "
                        f"A|B images in --dataroot {opt.dataroot}")
    from pix2pix_tr.data import AlignedDataset

    try:
        dataset = AlignedDataset(str(root), phase=opt.phase, direction=opt.direction, preprocess=opt.preprocess,
                                 load_size=opt.load_size, crop_size=opt.crop_size, no_flip=True,
                                 max_dataset_size=getattr(opt, "max_dataset_size", math.inf), seed=opt.seed,
                                 input_nc=gen["input_nc"], output_nc=gen["output_nc"])
    except (FileNotFoundError, ValueError) as exc:
        raise InferenceError(str(exc)) from exc
    n = len(dataset) if opt.num_test is None else min(opt.num_test, len(dataset))
    if n == 0:
        raise InferenceError(f"{root / opt.phase} holds no images: put A|B pairs there "
                        f"(datasets/prepare_cityscapes_dataset.py writes them)")
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = torch.utils.data.DataLoader(subset, batch_size=opt.batch_size, shuffle=False,
                                         num_workers=getattr(opt, "num_threads", 0),
                                         pin_memory=device.type == "cuda")

    run_dir = join_name(opt.results_dir, opt.name) / f"{opt.phase}_{opt.epoch}"
    check_no_overlap(run_dir, {"the input folder": root / opt.phase, "the checkpoint folder": ckpt_dir},
                     output_flag="--results_dir")
    image_dir = ensure_writable_dir(run_dir / "images", flag="--results_dir")
    torch.manual_seed(opt.seed)  # dropout masks in train mode
    stems: list[str] = []
    seen: set[str] = set()

    from tqdm import tqdm

    bar = tqdm(total=n, desc=f"test {opt.name} {opt.phase}_{opt.epoch}", unit="img", disable=not progress,
               file=sys.stderr)
    # PNG encoding runs in two threads while the next batch is computed; at most ``max_pending`` images wait
    max_pending = max(48, 6 * opt.batch_size)
    with ThreadPoolExecutor(max_workers=2) as pool, torch.inference_mode():
        pending: collections.deque = collections.deque()
        for batch in loader:
            real_A = batch["A"].to(device, non_blocking=True)
            fake_B = net(real_A)
            arrays = {"real_A": batch["A"], "fake_B": fake_B.float().cpu(), "real_B": batch["B"]}
            for i, stem in enumerate(batch["name"]):
                if stem in seen:
                    raise InferenceError(f"two inputs in {root / opt.phase} are both named {stem!r}: test.py "
                                         f"names its outputs after the input file, so the names must be unique")
                seen.add(stem)
                stems.append(stem)
                for v in VISUALS:
                    img = tensor_to_image(arrays[v][i])
                    pending.append(pool.submit(atomic_save_image, img, image_dir / image_file_name(stem, v)))
            bar.update(len(batch["name"]))
            while pending and (pending[0].done() or len(pending) > max_pending):
                pending.popleft().result()  # re-raises a failed write here
        while pending:
            pending.popleft().result()
    bar.close()

    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    header = run_header(opt.name, str(opt.epoch), opt.phase, train_opt, gen, eval_mode=eval_mode, n_images=n,
                        checkpoint=str(path), date=date,
                        data=f"{root / opt.phase} ({opt.direction}, {opt.preprocess} to {opt.crop_size}px, no flip)")
    pages = write_results_gallery(run_dir, stems, title=f"{opt.name}: {opt.phase} {opt.epoch}", header=header,
                                  per_page=per_page)
    results = {
        "name": opt.name,
        "epoch": str(opt.epoch),
        "phase": opt.phase,
        "eval": eval_mode,
        "date": date,
        "n_images": n,
        "stems": stems,
        "visuals": {v: f"images/{{stem}}_{v}.png" for v in VISUALS},
        "pages": [p.name for p in pages],
        "header": header,
        "generator": gen,
        "options": json_clean(vars(opt)),
        "options_source": options_source,
        "train_options": json_clean(train_opt),
    }
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1))
    return {**results, "run_dir": str(run_dir)}


def _test(argv: Sequence[str] | None) -> int:
    from pix2pix_tr.data import DatasetError
    from pix2pix_tr.options import parse_test

    opt = parse_test(argv)  # argparse errors exit 2 with a usage line
    try:
        results = run_test(opt)
    except (InferenceError, DatasetError, PathError, NonFiniteStateError) as exc:
        # a file that only fails when decoded surfaces from the DataLoader, from a worker wrapped in its traceback
        message = str(exc).strip().splitlines()[-1] if "Original Traceback" in str(exc) else str(exc)
        raise InferenceError(message.split("DatasetError: ", 1)[-1]) from exc
    print(f"wrote {results['n_images']} image triplets and {len(results['pages'])} page(s) to "
          f"{results['run_dir']}; open {Path(results['run_dir']) / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of test.py (and ``pix2pix-tr-test``): parse, run, print where the results are; one line and
    exit status 2 on bad input."""
    return run_cli(_test, argv, user_errors=InferenceError, prog="test.py")
