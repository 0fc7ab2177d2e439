"""The loader's cost per training sample: decoding every epoch, ``--cache_images``, and ``--augment_on_device``.

A batch-1 GPU step of pix2pix takes a few milliseconds; the loader workers must prepare each sample faster than
that or the GPU waits. This benchmark measures, side by side in one run on the same A|B files (the synthetic city
at the paper's 256x256 pair size by default, 512x256 files, ``--load_size 286 --crop_size 256`` jitter):

* ``decode``        the default path: each sample decodes its PNG, resizes both halves (bicubic), crops, flips and
                    converts them to float, in the loader;
* ``cache``         ``--cache_images``: decoding and the deterministic resize happen once per file; the loader crops,
                    flips and converts;
* ``cache+device``  ``--cache_images --augment_on_device``: the loader only hands over the cached uint8 halves and
                    the draw; the crop, flip and conversion run on ``--device`` (timed separately, per batch,
                    including the host -> device copy).

Loader time is the main-process time per sample (``num_workers=0``, one torch thread as in a worker process):
what one worker spends, so with W workers the loader delivers about W / time samples per second. Configurations alternate for ``--rounds`` rounds
and the table gives medians, the ratio to ``decode`` and the bytes per sample that cross to the device.

    python benchmarks/data_path.py                       # CPU, about a minute
    python benchmarks/data_path.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader  # noqa: E402
from pix2pix_tr.data.cityscapes import prepare_cityscapes  # noqa: E402
from pix2pix_tr.data.synthetic_city import make_synthetic_cityscapes  # noqa: E402

CONFIGS = {"decode": dict(), "cache": dict(cache_images=True),
           "cache+device": dict(cache_images=True, augment_on_device=True)}


def make_pairs(work: Path, frames: int, size: int) -> Path:
    make_synthetic_cityscapes(work / "city", frames, 0, seed=0, width=2 * size, height=size)
    prepare_cityscapes(work / "city/gtFine", work / "city/leftImg8bit", work / "pairs", size, splits=("train",))
    return work / "pairs"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(ds: AlignedDataset, device: torch.device, batch_size: int, epoch: int) -> dict:
    """One pass over ``ds``: loader seconds per sample, then (a second loop over the same batches, so that the
    device's work cannot slow the loader down) device seconds per batch, and bytes per sample."""
    sampler = EpochSampler(len(ds), shuffle=True, seed=0)
    sampler.set_epoch(epoch)
    loader = make_dataloader(ds, batch_size, sampler, num_workers=0, pin_memory=device.type == "cuda")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker process (torch sets one thread there)
    try:
        t0 = time.perf_counter()
        batches = list(loader)
        load_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    n = sum(b["A"].shape[0] for b in batches)
    sync(device)
    t0 = time.perf_counter()
    for batch in batches:
        ds.to_device(batch, device, torch.channels_last)
    sync(device)
    dev_s = time.perf_counter() - t0
    nbytes = sum(b["A"].nbytes + b["B"].nbytes for b in batches)
    return dict(load_ms_per_sample=1e3 * load_s / n, device_ms_per_batch=1e3 * dev_s / len(batches),
                bytes_per_sample=nbytes / n)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24, help="A|B files (the synthetic city's train split)")
    ap.add_argument("--size", type=int, default=256, help="pair height (files are 2*size x size)")
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the files per configuration, alternating")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--dataroot", default="", help="use these A|B pairs (DATAROOT/train) instead of drawing them")
    ap.add_argument("--json", default="", help="also write the table to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load, crop = round(args.size * 286 / 256), args.size  # 286 for 256, as pix2pix
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = Path(args.dataroot) if args.dataroot else make_pairs(Path(tmp), args.frames, args.size)
        made_s = time.perf_counter() - t0
        kw = dict(load_size=load, crop_size=crop, direction="BtoA", seed=0)
        built, datasets = {}, {}
        for name, extra in CONFIGS.items():
            t0 = time.perf_counter()
            datasets[name] = AlignedDataset(root, "train", **kw, **extra)
            built[name] = time.perf_counter() - t0
        runs = {name: [] for name in CONFIGS}
        for r in range(args.rounds + 1):  # round 0 warms up (first CUDA copies, page cache)
            for name, ds in datasets.items():
                res = measure(ds, device, args.batch_size, epoch=r)
                if r:
                    runs[name].append(res)
    table = {}
    for name, rs in runs.items():
        table[name] = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        table[name]["build_s"] = built[name]
    base = table["decode"]["load_ms_per_sample"]
    print(f"Loader per sample, {len(datasets['decode'])} files of {2 * args.size}x{args.size}, load {load} crop "
          f"{crop}, batch {args.batch_size}, device {device} (files drawn in {made_s:.1f} s); medians of "
          f"{args.rounds} alternating passes")
    print("| configuration | loader ms/sample | vs decode | device ms/batch | bytes/sample to device | built in s |")
    print("|---|---|---|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {row['load_ms_per_sample']:.2f} | {row['load_ms_per_sample'] / base:.3f}x | "
              f"{row['device_ms_per_batch']:.2f} | {row['bytes_per_sample'] / 1e3:.0f} kB | {row['build_s']:.2f} |")
    out = dict(device=str(device), torch=torch.__version__, files=len(datasets["decode"]), size=args.size,
               load_size=load, crop_size=crop, batch_size=args.batch_size, rounds=args.rounds, table=table)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
