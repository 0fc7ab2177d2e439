"""test.py: run a trained generator over a split and write the images, an HTML gallery and ``results.json``.

``python test.py --dataroot cityscapes --name NAME`` does, in order:

1. read ``checkpoints/NAME/train_opt.json`` and take every network/data option the user did not pass
   (``--netG --ngf --norm --input_nc --output_nc --no_dropout --direction --preprocess --crop_size ...``) from
   training, so a test run cannot silently build a different net than the one trained;
2. load ``checkpoints/NAME/{epoch}_net_G.pth`` with ``torch.load(weights_only=True)`` (a plain state_dict;
   nothing in it is executed); if its keys or shapes do not fit the built generator, say which options differ
   (it searches the generator options for a configuration that fits the checkpoint);
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
import itertools
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from pix2pix_tr.io import NoSpaceError, atomic_save_image, atomic_write_text
from pix2pix_tr.paths import PathError, check_no_overlap, ensure_writable_dir, join_name
from pix2pix_tr.safe_load import (NonFiniteStateError, UnloadableCheckpointError, check_finite_state,
                                  load_weights_only)
from pix2pix_tr.report.gallery import VISUALS, image_file_name, write_results_gallery
from pix2pix_tr.report.images import tensor_to_image

__all__ = ["InferenceError", "CheckpointMismatchError", "generator_options", "checkpoint_path", "load_state_dict",
           "build_generator", "diagnose_mismatch", "run_test", "main", "run_header"]

# options that decide the generator's parameters (their flags name the fix in mismatch messages)
_GEN_FLAGS = ("netG", "ngf", "norm", "input_nc", "output_nc", "no_dropout")


class InferenceError(Exception):
    """A user-facing problem with test.py's input; the message is one sentence saying what to do."""


class CheckpointMismatchError(InferenceError):
    """The checkpoint's state_dict does not fit the generator built from the options."""


# ------------------------------------------------------------------------------------------------ checkpoint
def generator_options(opt: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`pix2pix_tr.models.define_G` arguments that decide the weights' keys and shapes."""
    get = opt.get if isinstance(opt, Mapping) else (lambda k, d=None: getattr(opt, k, d))
    norm = get("norm", "batch")
    return {
        "netG": get("netG", "unet_256"),
        "input_nc": int(get("input_nc", 3)),
        "output_nc": int(get("output_nc", 3)),
        "ngf": int(get("ngf", 64)),
        # SyncBatchNorm has the same parameters as BatchNorm; a single test process needs plain BatchNorm
        "norm": "batch" if norm == "syncbatch" else norm,
        "use_dropout": not bool(get("no_dropout", False)),
    }


def checkpoint_path(checkpoint_dir: str | os.PathLike, epoch: str | int) -> Path:
    """``checkpoint_dir/{epoch}_net_G.pth``; a InferenceError listing the saved epochs if it is missing."""
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / f"{epoch}_net_G.pth"
    if not path.is_file():
        if not checkpoint_dir.is_dir():
            raise InferenceError(f"no experiment folder {checkpoint_dir}: check --name and --checkpoints_dir")
        saved = sorted((p.name[: -len("_net_G.pth")] for p in checkpoint_dir.glob("*_net_G.pth")),
                       key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
        hint = f"saved epochs: {', '.join(saved)}" if saved else "no *_net_G.pth there at all"
        raise InferenceError(f"checkpoint {path} not found ({hint}): pick one with --epoch")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain generator state_dict with ``weights_only=True``, stripping DDP/compile prefixes."""
    try:
        state = load_weights_only(path, advice="test.py needs the plain netG.state_dict() that train.py saves as "
                                               "{epoch}_net_G.pth")
    except UnloadableCheckpointError as exc:
        raise InferenceError(str(exc)) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InferenceError(f"{path} is not a generator state_dict (a dict of tensors); test.py needs the "
                        f"{{epoch}}_net_G.pth files train.py saves, not training_state.pth")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    check_finite_state(out, path)  # a diverged run's weights would give blank images with exit status 0
    return out


def _shapes(module_or_state) -> dict[str, tuple[int, ...]]:
    items = module_or_state.state_dict().items() if isinstance(module_or_state, nn.Module) else module_or_state.items()
    return {k: tuple(v.shape) for k, v in items}


def _fits(state_shapes: Mapping[str, tuple], net_shapes: Mapping[str, tuple]) -> bool:
    return state_shapes == net_shapes


def _build_meta(gen: Mapping[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes of the generator ``gen`` (built on the meta device: no memory, no init cost)."""
    from pix2pix_tr.models import define_G

    try:
        with torch.device("meta"):
            return _shapes(define_G(**gen))
    except Exception:  # noqa: BLE001 - an impossible candidate configuration simply does not fit
        return None


def _flag(key: str, value: Any) -> str:
    if key == "use_dropout":
        return "--no_dropout"
    return f"--{key} {value}"


def diagnose_mismatch(state: Mapping[str, torch.Tensor], gen: Mapping[str, Any]) -> str:
    """Explain why ``state`` does not fit ``define_G(**gen)``: which options differ, or which keys.

    The first and last convolutions give the checkpoint's ``ngf``, ``input_nc`` and ``output_nc``; every
    generator architecture, norm and dropout setting is then tried (on the meta device) and the fitting
    configuration closest to ``gen`` is reported as flags.
    """
    from pix2pix_tr.models import GENERATORS, NORMS

    ckpt = {k: tuple(v.shape) for k, v in state.items()}
    convs = [s for s in ckpt.values() if len(s) == 4]
    found = None
    if convs:
        first, last = convs[0], convs[-1]
        options = {
            "netG": [gen["netG"]] + [g for g in GENERATORS if g != gen["netG"]],
            "ngf": sorted({gen["ngf"], first[0]}, key=lambda v: v != first[0]),
            "input_nc": sorted({gen["input_nc"], first[1]}, key=lambda v: v != first[1]),
            "output_nc": list(dict.fromkeys([last[1], last[0], gen["output_nc"]])),
            "norm": [gen["norm"]] + [n for n in NORMS if n not in (gen["norm"], "syncbatch")],
            "use_dropout": [gen["use_dropout"], not gen["use_dropout"]],
        }
        keys = list(options)
        best = None
        for values in itertools.product(*(options[k] for k in keys)):
            cand = dict(zip(keys, values))
            diff = [k for k in keys if cand[k] != gen[k]]
            if best is not None and len(diff) >= len(best[1]):
                continue
            shapes = _build_meta(cand)
            if shapes is not None and _fits(ckpt, shapes):
                best = (cand, diff)
        if best is not None:
            found = best
    net = _build_meta(dict(gen)) or {}
    missing = [k for k in net if k not in ckpt]
    unexpected = [k for k in ckpt if k not in net]
    wrong = [f"{k} {ckpt[k]} vs {net[k]}" for k in net if k in ckpt and ckpt[k] != net[k]]
    built = ", ".join(_flag(k, gen[k]) for k in ("netG", "ngf", "norm", "input_nc", "output_nc"))
    detail = "; ".join(
        f"{label}: {len(items)} (e.g. {', '.join(items[:2])})"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong))
        if items)
    if found is not None:
        cand, diff = found
        if diff:
            changes = ", ".join(f"{k} {gen[k]} -> {cand[k]}" for k in diff)
            flags = " ".join(_flag(k, cand[k]) for k in diff if not (k == "use_dropout" and cand[k]))
            todo = []
            if flags:
                todo.append(f"pass {flags} to test.py")
            if "use_dropout" in diff and cand["use_dropout"]:
                todo.append('set "no_dropout": false in train_opt.json (the checkpoint has dropout)')
            return (f"the checkpoint was trained with different generator options ({changes}); "
                    f"{' and '.join(todo)}; built {built}; {detail}")
    return (f"the checkpoint does not fit the generator built with {built} and no other --netG/--ngf/--norm/"
            f"--input_nc/--output_nc/--no_dropout setting fits it either; check --name/--epoch ({detail})")


def build_generator(gen: Mapping[str, Any], state: Mapping[str, torch.Tensor], *,
                    source: str = "the checkpoint") -> nn.Module:
    """``define_G(**gen)`` with ``state`` loaded (strictly); CheckpointMismatchError explaining a misfit."""
    from pix2pix_tr.models import define_G

    try:
        net = define_G(**gen, init_type="normal", init_gain=0.02)
    except ValueError as exc:
        raise InferenceError(f"cannot build the generator: {exc}") from exc
    if not _fits(_shapes(state), _shapes(net)):
        raise CheckpointMismatchError(f"{source} does not fit: {diagnose_mismatch(state, gen)}")
    net.load_state_dict(state, strict=True)
    return net


# ------------------------------------------------------------------------------------------------ the run
def _resolve_device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InferenceError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"--device {name} asked for CUDA but no CUDA device is available: use --device cpu")
    return device


def _resolve_dataroot(dataroot: str | os.PathLike) -> Path:
    try:
        from pix2pix_tr.data import resolve_dataroot
    except ImportError:  # pragma: no cover - the data package always provides it
        return Path(dataroot)
    try:
        return Path(resolve_dataroot(dataroot))
    except (FileNotFoundError, ValueError) as exc:
        raise InferenceError(str(exc)) from exc


_OPTIMIZER_KEYS = ("optimizer", "lr", "beta1", "beta2", "tr_lambda", "tr_period", "tr_mode", "no_tr_inner_decay",
                   "lr_policy", "batch_size", "n_epochs", "n_epochs_decay", "gan_mode", "lambda_L1", "amp", "seed")


def optimizer_summary(train_opt: Mapping[str, Any]) -> str:
    """``tradam (lr 0.0002, beta1 0.5, lambda 0.1, S 10, paper)``-style one-liner of the training optimizer."""
    name = train_opt.get("optimizer")
    if name is None:
        return "unknown (no train_opt.json)"
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


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def run_test(opt: argparse.Namespace, *, train_opt: Mapping[str, Any] | None = None, per_page: int = 50,
             progress: bool = True) -> dict[str, Any]:
    """Run test.py for the parsed options ``opt`` (as :func:`pix2pix_tr.options.parse_test` returns them).

    ``train_opt`` defaults to the experiment's ``train_opt.json``. Returns the content of ``results.json``
    (plus ``run_dir``). Raises InferenceError with a one-sentence message on bad input.
    """
    from pix2pix_tr.options import merge_test_options

    ckpt_dir = join_name(opt.checkpoints_dir, opt.name)
    if train_opt is None:
        json_path = ckpt_dir / "train_opt.json"
        if not json_path.is_file():
            if not ckpt_dir.is_dir():
                raise InferenceError(f"no experiment folder {ckpt_dir}: check --name and --checkpoints_dir")
            raise InferenceError(f"{json_path} not found, so the network options of the run are unknown: it is "
                            f"written by train.py; copy it next to the checkpoint or retrain")
        try:
            from pix2pix_tr.options import load_train_options

            train_opt = load_train_options(ckpt_dir)
        except ValueError as exc:
            raise InferenceError(f"{json_path} is not valid JSON ({exc}): restore it from train_opt.txt") from exc
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
                                 f"{ckpt_dir / 'train_opt.json'}): pass --{key} with one of {', '.join(allowed)}")

    multiple = required_multiple(gen["netG"])
    if opt.preprocess != "none" and opt.crop_size % multiple:
        raise InferenceError(f"--netG {gen['netG']} needs inputs whose side is a multiple of {multiple}, but "
                             f"--crop_size is {opt.crop_size}: pass --crop_size {multiple} (or a multiple of it)")

    device = _resolve_device(getattr(opt, "device", "auto"))
    path = checkpoint_path(ckpt_dir, opt.epoch)
    state = load_state_dict(path)
    net = build_generator(gen, state, source=str(path)).to(device)
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
        "options": _jsonable(vars(opt)),
        "train_options": _jsonable(train_opt),
    }
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1))
    return {**results, "run_dir": str(run_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of test.py: parse, run, print where the results are; exit 2 with one line on bad input."""
    from pix2pix_tr.options import parse_test

    opt = parse_test(argv)
    from pix2pix_tr.data import DatasetError

    try:
        results = run_test(opt)
    except NoSpaceError as exc:
        print(f"test.py: error: {exc}: free space there and run test.py again", file=sys.stderr)
        return 3
    except (InferenceError, DatasetError, PathError, NonFiniteStateError) as exc:
        # a file that only fails when decoded surfaces from the DataLoader, from a worker wrapped in its traceback
        message = str(exc).strip().splitlines()[-1] if "Original Traceback" in str(exc) else str(exc)
        message = message.split("DatasetError: ", 1)[-1]
        print(f"test.py: error: {message}", file=sys.stderr)
        return 2
    print(f"wrote {results['n_images']} image triplets and {len(results['pages'])} page(s) to "
          f"{results['run_dir']}; open {Path(results['run_dir']) / 'index.html'}")
    return 0
