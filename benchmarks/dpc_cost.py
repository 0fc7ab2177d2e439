"""The cost of DeepLab's DPC-Xception71 graph (``--protocol dpc``) in PyTorch: loading it and labelling one frame.

The published graph is not here (nothing downloads); ``tests/fixtures/make_deeplab_fixtures.py --full DIR`` (run
with TensorFlow, in its own environment) writes a graph of the same structure and size: Xception-71 at its full
widths and depth (16 middle units), the Cityscapes dense prediction cell, the decoder, 19 classes, exported as
``export_model.py`` does for the 1025x2049 crop, random weights (167.9 MB), plus TensorFlow's labels on a 256x256
frame. This script loads that graph, checks its labels against TensorFlow's when that file is given, and times one
frame at 256x256 (the paper's pix2pix frames; the graph pads them to its crop size) and at 1024x2048 (a
Cityscapes photo), medians over ``--repeats`` rounds after one warm-up round, the sizes in turn within each round
(a change of load on a shared machine hits both), in one process::

    /work/venv-tf/bin/python tests/fixtures/make_deeplab_fixtures.py --full /tmp/xception71_dpc
    python benchmarks/dpc_cost.py --graph /tmp/xception71_dpc/frozen_inference_graph.pb \\
        --tensorflow /tmp/xception71_dpc/tensorflow_outputs.npz [--device cuda] [--json out.json]

Columns: seconds per frame (median), the ratio to the 256x256 frame, the peak resident memory of the process so far
(CPU) or the peak CUDA memory of that size (GPU); the load time (read, parse, compile) is printed above the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.deeplab import load_deeplab  # noqa: E402
from evaluation.protocols import full_fp32  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def synthetic_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    here = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "make_deeplab_fixtures.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_deeplab_fixtures", here)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_frame(h, w, seed)


def time_frame(model, frame: torch.Tensor, device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with full_fp32(device.type == "cuda"):
        labels = model(frame)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True, help="frozen_inference_graph.pb (or the model-zoo tarball)")
    p.add_argument("--tensorflow", default=None, help="tensorflow_outputs.npz of the fixture script: check labels")
    p.add_argument("--sizes", nargs="+", default=["256x256", "1024x2048"], help="frame sizes HxW")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    start = time.perf_counter()
    model = load_deeplab(args.graph, device)
    load_s = time.perf_counter() - start
    crop = model.crop_size
    print(f"graph {args.graph}: {Path(args.graph).stat().st_size / 1e6:.1f} MB, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {len(model.program.steps)} nodes run, "
          f"crop size {crop}; load (parse + compile) {load_s:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")

    sizes = [tuple(int(v) for v in text.split("x")) for text in args.sizes]
    frames = {hw: torch.from_numpy(synthetic_frame(*hw))[None].to(device) for hw in sizes}
    times: dict = {hw: [] for hw in sizes}
    labels: dict = {}
    memory: dict = {}
    # one warm-up run per size, then the sizes in turn, --repeats rounds: a load change hits every size alike
    for round_ in range(args.repeats + 1):
        for hw in sizes:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, labels[hw] = time_frame(model, frames[hw], device)
            if round_:
                times[hw].append(seconds)
            memory[hw] = (torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda"
                          else peak_rss_gb())
    rows = []
    for hw, text in zip(sizes, args.sizes):
        row = {"size": text, "padded_to": list(model.padded_size(*hw)), "seconds": statistics.median(times[hw]),
               "all_seconds": times[hw], "memory_gb": memory[hw]}
        if args.tensorflow and hw == (256, 256):
            theirs = np.load(args.tensorflow)["labels_256x256"]
            row["agreement_with_tensorflow"] = float(np.mean(labels[hw][0].cpu().numpy() == theirs))
        rows.append(row)

    base = rows[0]["seconds"]
    print()
    print(f"| frame (HxW) | padded by the graph to | seconds per frame (median of {args.repeats}) | ratio to "
          f"{rows[0]['size']} | {'peak CUDA memory' if device.type == 'cuda' else 'peak RSS'} (GB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['padded_to'][0]}x{row['padded_to'][1]} | {row['seconds']:.2f} | "
              f"{row['seconds'] / base:.2f} | {row['memory_gb']:.2f} |")
    for row in rows:
        if "agreement_with_tensorflow" in row:
            print(f"\nlabels at {row['size']} equal to TensorFlow's on the same graph: "
                  f"{row['agreement_with_tensorflow'] * 100:.3f}% of the pixels")
    if args.json:
        Path(args.json).write_text(json.dumps({"graph": args.graph, "load_seconds": load_s, "device": str(device),
                                               "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
