"""test.py: run a trained generator over A|B pairs or single images; write the images, an HTML gallery and
``results.json``.

``python test.py --dataroot cityscapes --name NAME`` does, in order:

1. take every network/data option the user did not pass (``--netG --ngf --norm --input_nc --output_nc
   --no_dropout --direction --preprocess --crop_size ...``) from training: ``checkpoints/NAME/train_opt.json``,
   else the ``train_opt.txt`` the official pix2pix (and our train.py) writes, else the command line alone
   (``--direction`` then required); it prints which source it used (:mod:`pix2pix_tr.inference.checkpoint`);
2. load ``checkpoints/NAME/{epoch}_net_G.pth`` into a :class:`~pix2pix_tr.inference.translator.Translator`
   (``weights_only=True``; NaN/inf refused; a checkpoint that does not fit the options names the flags to change);
3. read the inputs: ``--dataset_mode aligned`` (the default) reads the A|B pairs of ``DATAROOT/{phase}``
   (``val`` by default); ``--dataset_mode single`` (``--model test`` implies it) reads plain images from
   ``--dataroot``: a folder, a text file listing paths, or one image, e.g. label maps from a simulator (colour
   maps, or single-channel Cityscapes label ids / train ids, coloured through the label table). A folder of the
   other kind is refused in one sentence naming the mode that fits (:mod:`pix2pix_tr.inference.datasets`);
4. run the generator over the first ``--num_test`` inputs (all by default) in batches of ``--batch_size``, on
   ``--device``, with a progress bar;
5. write ``results/NAME/{phase}_{epoch}/images/{stem}_real_A.png``, ``_fake_B.png`` (and ``_real_B.png`` for
   pairs), ``index.html`` (+ ``index_2.html``... 50 rows per page) and ``results.json``.

Preprocessing is deterministic (:func:`pix2pix_tr.data.single.test_transform`): no flip, ``--load_size`` defaults to
``--crop_size`` so that ``resize_and_crop`` is a plain resize, and a crop, when the sizes ask for one, is the
centre crop; ``results.json`` records it (``test_preprocess``), with ``full_frame: false`` when only part of each
frame is shown.

The results folder (``results.json``, with ``status`` and ``run_id``):

* before any image is written, ``results.json`` says ``"status": "incomplete"`` with a fresh ``run_id``, and the
  outputs of an earlier run in that folder (``images/*_real_A.png``, ``*_fake_B.png``, ``*_real_B.png``, the
  gallery pages, orphan temporary files) are removed, so nothing left from it can pass for part of this run;
* every PNG written carries the run's id as a PNG text chunk ``pix2pix_tr_run`` (``Image.open(p).text``);
* at the end ``results.json`` says ``"status": "complete"``. Ctrl-C or SIGTERM stops after the current batch: the
  images in flight are finished (no temporary file is left), ``results.json`` stays ``incomplete`` (listing the
  images written) and test.py exits 130. One test.py at a time writes a results folder (``.lock``).

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
import contextlib
import datetime as _dt
import json
import math
import os
import re
import signal
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from pix2pix_tr.cli import json_clean, run_cli
from pix2pix_tr.inference.checkpoint import InferenceError
from pix2pix_tr.io import atomic_save_image, atomic_write_text
from pix2pix_tr.paths import PathError, check_no_overlap, ensure_writable_dir, is_within, join_name
from pix2pix_tr.safe_load import NonFiniteStateError
from pix2pix_tr.report.gallery import VISUALS, image_file_name, write_results_gallery
from pix2pix_tr.report.images import tensor_to_image

__all__ = ["optimizer_summary", "run_header", "run_test", "main", "resolve_mode", "remove_earlier_outputs",
           "RESULTS_FILE", "RUN_ID_KEY", "EXIT_INTERRUPTED"]


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


# ------------------------------------------------------------------------------------------------ the results folder
#: results.json's name in a results folder, and the PNG text chunk that ties each image to its run
RESULTS_FILE = "results.json"
RUN_ID_KEY = "pix2pix_tr_run"
#: interrupted (Ctrl-C or SIGTERM): results.json stays "incomplete"
EXIT_INTERRUPTED = 130
_OUTPUT_RE = re.compile(r"^.+_(real_A|fake_B|real_B)\.png$")
_PAGE_RE = re.compile(r"^index(_\d+)?\.html$")


class StopRequest:
    """Ctrl-C / SIGTERM -> ``requested`` (test.py stops after the current batch); a second Ctrl-C raises
    KeyboardInterrupt at once. Installed only in the main thread; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signal_name = True, signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _results_lock(run_dir: Path):
    """One test.py per results folder: an exclusive ``flock`` on ``run_dir/.lock`` (dropped by the kernel when the
    process ends, however it ends)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no exclusion
        yield
        return
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "process unknown"
            raise InferenceError(f"{run_dir} is being written by another test.py ({holder}); wait for it to finish, "
                                 f"or pass another --results_dir or --phase") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        yield
    finally:
        os.close(fd)


def remove_earlier_outputs(run_dir: Path) -> int:
    """Remove what an earlier test.py left in ``run_dir``: its images (``images/*_{real_A,fake_B,real_B}.png``),
    gallery pages (``index*.html``) and orphan temporary files; other files are left alone. Returns the count."""
    removed = 0
    for folder, pattern in ((run_dir / "images", _OUTPUT_RE), (run_dir, _PAGE_RE)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            name = path.name
            if (pattern.match(name) or (name.startswith(".") and name.endswith(".tmp"))) and path.is_file():
                path.unlink()
                removed += 1
    return removed


def _png_info(run_id: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(RUN_ID_KEY, run_id)
    return info


def _check_inputs_and_outputs(run_dir: Path, root: Path, mode: str, phase: str, paths: Sequence[Path]) -> None:
    """Outputs never overlap inputs: the results folder is not inside a folder test.py reads (aligned:
    ``DATAROOT/PHASE``; single: the ``--dataroot`` folder, listed recursively), and no input lies inside the
    results folder, whose earlier outputs test.py removes. (A list or one file is read file by file: outputs
    beside them are never read back.)"""
    folder = root / phase if mode == "aligned" else root if root.is_dir() else None
    if folder is not None:
        check_no_overlap(run_dir, {"the input folder": folder}, output_flag="--results_dir")
    for item in ([folder] if folder is not None else []) + list(paths):
        if is_within(item, run_dir):
            raise PathError(f"the input {item} is inside the results folder {run_dir}, whose earlier outputs "
                            f"test.py replaces: copy the inputs elsewhere, or pass another --results_dir or --phase")


def resolve_mode(opt: argparse.Namespace) -> str:
    """``--dataset_mode`` after ``--model``: ``--model test`` (the official spelling) means single images."""
    mode = getattr(opt, "dataset_mode", None)
    model = getattr(opt, "model", None)
    if model == "test":
        if mode == "aligned":
            raise InferenceError("--model test reads single images: drop --dataset_mode aligned, or pass --model "
                                 "pix2pix for A|B pairs")
        return "single"
    return mode or "aligned"


def run_test(opt: argparse.Namespace, *, train_opt: Mapping[str, Any] | None = None, per_page: int = 50,
             progress: bool = True) -> dict[str, Any]:
    """Run test.py for the parsed options ``opt`` (as :func:`pix2pix_tr.options.parse_test` returns them).

    ``train_opt`` defaults to the experiment's ``train_opt.json``. Returns the content of ``results.json``
    (plus ``run_dir``); ``status`` is ``"incomplete"`` when Ctrl-C or SIGTERM stopped the run. Raises
    InferenceError (or DatasetError, PathError) with a one-sentence message on bad input.
    """
    from pix2pix_tr.data.errors import DatasetError
    from pix2pix_tr.inference.datasets import check_network_sizes, input_sizes, make_test_dataset
    from pix2pix_tr.inference.translator import OPTION_NAMES, Translator

    mode = resolve_mode(opt)
    phase = opt.phase or ("single" if mode == "single" else "val")
    ckpt_dir = join_name(opt.checkpoints_dir, opt.name)
    overrides = {k: getattr(opt, k, None) for k in OPTION_NAMES}
    translator, info = Translator._load(ckpt_dir, opt.epoch, overrides, train_opt=train_opt,
                                        device=getattr(opt, "device", "auto"), eval=bool(getattr(opt, "eval", False)),
                                        amp=getattr(opt, "amp", None), seed=None, batch_size=opt.batch_size)
    options, train_opt, options_source, gen = info["options"], info["train_options"], info["source"], info["generator"]
    opt = argparse.Namespace(**{**vars(opt), **options, "phase": phase, "dataset_mode": mode})
    spec = translator.preprocess_spec
    device = translator.device
    print(f"network options from {options_source}: {gen['netG']}, ngf {gen['ngf']}, norm {gen['norm']}, "
          f"{'dropout' if gen['use_dropout'] else 'no dropout'}, {gen['input_nc']}->{gen['output_nc']} channels, "
          f"{opt.direction}")
    if getattr(opt, "verbose", False):  # the official's --verbose: the network and its size
        print(f"{translator.net}\n[Network G] Total number of parameters : "
              f"{sum(p.numel() for p in translator.net.parameters()) / 1e6:.3f} M")
    eval_mode = translator.eval_mode
    if not eval_mode and opt.batch_size > 1 and gen["norm"] == "batch":
        print(f"note: train-mode testing with --batch_size {opt.batch_size}: BatchNorm statistics are shared by "
              f"the images of a batch; pass --eval or --batch_size 1 for per-image results", file=sys.stderr)

    root = _resolve_dataroot(opt.dataroot) if mode == "aligned" else Path(opt.dataroot)
    try:
        dataset = make_test_dataset(mode, root, phase, direction=opt.direction, spec=spec, input_nc=gen["input_nc"],
                                    output_nc=gen["output_nc"],
                                    max_dataset_size=getattr(opt, "max_dataset_size", math.inf),
                                    label_format=getattr(opt, "label_format", None) or "auto")
        n = len(dataset) if opt.num_test is None else min(opt.num_test, len(dataset))
        paths = list(dataset.paths[:n])
        sizes = input_sizes(dataset)[:n]
        check_network_sizes(dataset, spec, gen["netG"])
        record = spec.record(sizes)
    except (FileNotFoundError, ValueError) as exc:
        raise InferenceError(str(exc)) from exc
    where = root / phase if mode == "aligned" else root
    if n == 0:
        raise InferenceError(f"{where} holds no images: put A|B pairs there "
                             f"(datasets/prepare_cityscapes_dataset.py writes them)")
    if not record["full_frame"]:
        print(f"note: --load_size {spec.load_size} with --crop_size {spec.crop_size} ({spec.preprocess}): each image "
              f"is shown by its centre {spec.crop_size}x{spec.crop_size} only, not the full frame (recorded in "
              f"results.json: test_preprocess)", file=sys.stderr)
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = torch.utils.data.DataLoader(subset, batch_size=opt.batch_size, shuffle=False,
                                         num_workers=getattr(opt, "num_threads", 0),
                                         pin_memory=device.type == "cuda")

    run_dir = join_name(opt.results_dir, opt.name) / f"{phase}_{opt.epoch}"
    _check_inputs_and_outputs(run_dir, root, mode, phase, paths)
    check_no_overlap(run_dir, {"the checkpoint folder": ckpt_dir}, output_flag="--results_dir")
    ensure_writable_dir(run_dir, flag="--results_dir")
    visuals = VISUALS if mode == "aligned" else ("real_A", "fake_B")
    header = run_header(opt.name, str(opt.epoch), phase, train_opt, gen, eval_mode=eval_mode, n_images=n,
                        checkpoint=str(info["checkpoint"]), date="",
                        data=(f"{where} ({opt.direction}, {spec.describe()}, no flip)" if mode == "aligned" else
                              f"{where} (single images, {spec.describe()})"))
    results: dict[str, Any] = {
        "status": "incomplete",
        "run_id": uuid.uuid4().hex,
        "name": opt.name,
        "epoch": str(opt.epoch),
        "phase": phase,
        "dataset_mode": mode,
        "eval": eval_mode,
        "date": "",
        "n_images": n,
        "stems": [],
        "visuals": {v: f"images/{{stem}}_{v}.png" for v in visuals},
        "pages": [],
        "test_preprocess": record,
        "header": header,
        "generator": gen,
        "options": json_clean(vars(opt)),
        "options_source": options_source,
        "train_options": json_clean(train_opt),
    }

    def commit(**changes: Any) -> None:
        results.update(changes)
        atomic_write_text(run_dir / RESULTS_FILE, json.dumps(results, indent=1))

    with _results_lock(run_dir), StopRequest() as stop:
        date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        header["date"] = date
        commit(date=date)  # "incomplete", before any image is written
        remove_earlier_outputs(run_dir)
        image_dir = ensure_writable_dir(run_dir / "images", flag="--results_dir")
        stems = _write_images(loader, translator, visuals, image_dir, _png_info(results["run_id"]), stop,
                              where=where, total=n, desc=f"test {opt.name} {phase}_{opt.epoch}", progress=progress,
                              seed=opt.seed, batch_size=opt.batch_size,
                              aspect_ratio=getattr(opt, "aspect_ratio", 1.0))
        if stop.requested:
            commit(stems=stems, n_images=len(stems), interrupted=stop.signal_name)
            return {**results, "run_dir": str(run_dir)}
        pages = write_results_gallery(run_dir, stems, title=f"{opt.name}: {phase} {opt.epoch}", header=header,
                                      per_page=per_page, visuals=visuals,
                                      image_width=getattr(opt, "display_winsize", 256))
        commit(status="complete", stems=stems, pages=[p.name for p in pages])
    if getattr(opt, "use_wandb", False):  # the official's --use_wandb: the result images, one table row per input
        from pix2pix_tr.report.wandb_log import log_test_results

        log_test_results(run_dir / "images", stems, visuals, project=opt.wandb_project_name, name=opt.name,
                         config=results["options"], error=InferenceError)
    return {**results, "run_dir": str(run_dir)}


def _write_images(loader, translator, visuals: Sequence[str], image_dir: Path, pnginfo, stop: StopRequest, *,
                  where: Path, total: int, desc: str, progress: bool, seed: int, batch_size: int,
                  aspect_ratio: float = 1.0) -> list[str]:
    """Run the translator over the loader and write each visual as a PNG (in two threads, while the next batch
    is computed); stop after the current batch when ``stop.requested``. Returns the stems written.
    ``aspect_ratio`` (the official's ``--aspect_ratio``): above 1 the images are widened, below 1 made taller."""
    from tqdm import tqdm

    stems: list[str] = []
    seen: set[str] = set()
    torch.manual_seed(seed)  # dropout masks in train mode (the translator draws from the global generator here)
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress, file=sys.stderr)
    max_pending = max(48, 6 * batch_size)  # at most this many images wait to be encoded
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: collections.deque = collections.deque()
        batches = iter(loader)
        while not stop.requested:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except RuntimeError:
                if stop.requested:  # a Ctrl-C reaches the loader's workers too; they end, and so does the run
                    break
                raise
            fake_B = translator.forward(batch["A"])
            arrays = {"real_A": batch["A"], "fake_B": fake_B.cpu(), "real_B": batch.get("B")}
            names = []
            for i, stem in enumerate(batch["name"]):
                if stem in seen:
                    raise InferenceError(f"two inputs in {where} are both named {stem!r}: test.py names its outputs "
                                         f"after the input file, so the names must be unique")
                seen.add(stem)
                names.append(stem)
                for v in visuals:
                    img = _with_aspect_ratio(tensor_to_image(arrays[v][i]), aspect_ratio)
                    pending.append(pool.submit(atomic_save_image, img, image_dir / image_file_name(stem, v),
                                               pnginfo=pnginfo))
            stems.extend(names)
            bar.update(len(names))
            while pending and (pending[0].done() or len(pending) > max_pending):
                pending.popleft().result()  # re-raises a failed write here
        while pending:
            pending.popleft().result()
        del batches
    bar.close()
    return stems




def _with_aspect_ratio(img, ratio: float):
    """The official save_images' resize of an (H, W, 3) uint8 image: width x ratio when ratio > 1, height / ratio
    when ratio < 1 (bicubic)."""
    if ratio == 1.0:
        return img
    import numpy as np
    from PIL import Image

    h, w = img.shape[:2]
    size = (int(w * ratio), h) if ratio > 1.0 else (w, int(h / ratio))
    return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


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
    run_dir = Path(results["run_dir"])
    if results["status"] != "complete":
        print(f"test.py: stopped by {results.get('interrupted', 'a signal')} after {results['n_images']} image(s); "
              f"{run_dir / RESULTS_FILE} says \"incomplete\": run the same command again for the whole set",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    kind = "image triplets" if results["dataset_mode"] == "aligned" else "input/output pairs"
    print(f"wrote {results['n_images']} {kind} and {len(results['pages'])} page(s) to {run_dir}; open "
          f"{run_dir / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of test.py (and ``pix2pix-tr-test``): parse, run, print where the results are; one line and
    exit status 2 on bad input."""
    return run_cli(_test, argv, user_errors=InferenceError, prog="test.py")
