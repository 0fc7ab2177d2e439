#!/usr/bin/env python
"""Every GPU measurement and check of the project in one command, within a time budget: DIR/report.md + raw JSON.

    python benchmarks/gpu_check.py --out gpu_check                  # CUDA, full size, at most --budget_s 300
    python benchmarks/gpu_check.py --out /tmp/gc --device cpu --quick   # the same steps, tiny, on a CPU

Sections, in order (each one is an ordinary command of the project, run as a subprocess and timed):

1. environment: torch, CUDA, cuDNN, the GPU's name and memory, Python, the commit;
2. ``python -m pytest -m cuda``: the tests that need a GPU (TRAdam/TRSGD in every mode against the float64 oracle
   on CUDA tensors, a CUDA-graph replay of the optimizer step, AMP, DDP over NCCL, resume, test.py, FCN-score);
3. ``benchmarks/optimizer_step.py``: TRAdam/TRSGD step time against torch's fused Adam/SGD on the generator's
   54.4M parameters;
4. ``benchmarks/train_throughput.py``: the original recipe against ours, lever by lever, at batch 1 and 16;
5. ``benchmarks/data_path.py``: the loader's time per sample (decoding every epoch, ``--cache_images``,
   ``--augment_on_device``) and the device's time for the crop, flip and conversion;
6. end to end on the synthetic city through the real commands: ``datasets/make_synthetic_cityscapes.py`` ->
   ``datasets/prepare_cityscapes_dataset.py`` -> ``train.py`` (256x256, about 1,000 iterations) -> ``test.py`` ->
   ``python -m evaluation.train_scorer`` -> ``python -m evaluation.fcn_score`` (GT and synthesized) ->
   ``python -m evaluation.compare_runs``, with the FCN-score table and each step's time. The city is drawn in the
   background while sections 2-4 use the GPU.

Each section gets a share of ``--budget_s`` (and whatever earlier sections left); a command still running at its
share's end is stopped, and the report says so. The report is rewritten after every section, so whatever stops
this script (its budget, Ctrl-C, SIGTERM, the machine's own limit) leaves the sections done so far in DIR.

The GPU machine lacks the ``dominate`` package (test.py's and fcn_score's HTML pages): carry it as a wheel in the
repository's git-ignored ``.whl/`` folder (``python -m pip download dominate -d .whl`` here) and this script installs
it from there (``pip install --no-index --find-links .whl dominate``) when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_ITERS = 2975 * 200  # Cityscapes train split x the paper's 200 epochs, batch 1

# Section shares of the budget (the end-to-end run also overlaps its data step with sections 2-4).
# pytest -m cuda compiles the optimizers' Triton kernels and starts a few subprocesses; the batch-1 throughput
# run compiles the networks (the configurations it has no time for are left out, "ours" is measured first).
SHARES = {"pytest_cuda": 0.27, "optimizer_step": 0.08, "throughput_b1": 0.22, "throughput_b16": 0.08,
          "data_path": 0.04, "end_to_end": 0.31}


class Check:
    def __init__(self, out: Path, budget_s: float, device: str, quick: bool):
        self.out, self.budget_s, self.device, self.quick = out, budget_s, device, quick
        self.start = time.monotonic()
        self.data: dict = {"args": dict(budget_s=budget_s, device=device, quick=quick), "sections": {}}
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.current: subprocess.Popen | None = None

    # -- time
    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def share(self, name: str, reserve: float) -> float:
        """Seconds for a section: its share of the budget, more if earlier sections finished early, never more
        than what is left minus ``reserve`` (what later sections are guaranteed)."""
        return max(0.0, min(self.left() - reserve, max(SHARES[name] * self.budget_s, 0.0) + self._saved()))

    def _saved(self) -> float:
        used = sum(s.get("seconds", 0.0) for s in self.data["sections"].values())
        planned = sum(SHARES[k] * self.budget_s for k in self.data["sections"] if k in SHARES)
        return max(0.0, planned - used)

    # -- commands
    def run(self, cmd: list[str], timeout: float, log: Path, cwd: Path = ROOT) -> dict:
        """Run ``cmd`` (its output to ``log``), stopping its whole process group after ``timeout`` seconds."""
        shown = " ".join(shlex.quote(c) for c in cmd).replace(shlex.quote(sys.executable), "python", 1)
        t0 = time.monotonic()
        if timeout < 3:
            return dict(cmd=shown, status="skipped: no time left in the budget", seconds=0.0)
        with open(log, "w") as fh:
            self.current = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            try:
                rc = self.current.wait(timeout=timeout)
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                self.stop_current()
                status = f"stopped at its time share ({timeout:.0f} s)"
            finally:
                self.current = None
        return dict(cmd=shown, status=status, seconds=round(time.monotonic() - t0, 1), log=log.name)

    def stop_current(self) -> None:
        proc = self.current
        if proc is not None and proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=10)
                    return
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue

    # -- output
    def save(self) -> None:
        from pix2pix_tr.io import atomic_write_text

        self.data["elapsed_s"] = round(time.monotonic() - self.start, 1)
        atomic_write_text(self.out / "gpu_check.json", json.dumps(self.data, indent=2, default=str) + "\n")
        atomic_write_text(self.out / "report.md", render(self.data))


# ----------------------------------------------------------------------------------------------------- sections
def environment(check: Check) -> dict:
    import torch

    env = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               device=check.device, cuda_available=torch.cuda.is_available(), cpu_count=os.cpu_count())
    if check.device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(check.device))
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    env["dominate"] = ensure_dominate(check)
    return env


def ensure_dominate(check: Check) -> str:
    try:
        import dominate  # noqa: F401

        return "present"
    except ImportError:
        pass
    wheels = ROOT / ".whl"
    if not any(wheels.glob("dominate-*.whl")):
        return ("missing, and no wheel in .whl/: test.py and fcn_score will fail; on a machine with the registry run "
                "`python -m pip download dominate -d .whl` in the repository and bring .whl/ along")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "dominate"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:  # a read-only environment: install beside it
        site = check.out / "site"
        result = subprocess.run(cmd + ["--target", str(site)], capture_output=True, text=True)
        check.env["PYTHONPATH"] += os.pathsep + str(site)
    return "installed from .whl/" if result.returncode == 0 else f"install from .whl/ failed: {result.stderr[-300:]}"


def pytest_cuda(check: Check, timeout: float) -> dict:
    log = check.out / "pytest_cuda.log"
    res = check.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rfEs",
                     str(ROOT / "tests")], timeout, log)
    if log.exists():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        summary = [ln for ln in lines if re.search(r"\b(passed|failed|skipped|deselected|error)", ln)]
        res["summary"] = summary[-1].strip("= ") if summary else (lines[-1] if lines else "")
        res["failures"] = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:30]
    return res


def benchmark(check: Check, timeout: float, script: str, stem: str, args: list[str]) -> dict:
    """Run ``benchmarks/SCRIPT --device D --json OUT/STEM.json ARGS`` (log in OUT/STEM.log); its JSON table, if
    written, becomes the section's ``result``."""
    js = check.out / f"{stem}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--device", check.device, "--json", str(js), *args]
    res = check.run(cmd, timeout, check.out / f"{stem}.log")
    if js.exists():
        res["result"] = json.loads(js.read_text())
    return res


def optimizer_step(check: Check, timeout: float) -> dict:
    args = ["--ngf", "8", "--repeats", "1", "--period", "2", "--skip_compiled"] if check.quick else ["--repeats", "5"]
    return benchmark(check, timeout, "optimizer_step.py", "optimizer_step", args)


def throughput(check: Check, timeout: float, batch_size: int) -> dict:
    args = ["--batch_size", str(batch_size), "--budget_s", f"{max(timeout - 15, 1):.0f}"]
    if check.quick:
        args += ["--netG", "unet_64", "--size", "64", "--ngf", "8", "--ndf", "8", "--iters", "2", "--repeats", "1",
                 "--warmup", "1", "--only", "tradam,tradam+cl"]
    else:
        args += ["--iters", "10", "--repeats", "3", "--warmup", "3"] + (["--compile"] if batch_size == 1 else [])
    return benchmark(check, timeout, "train_throughput.py", f"train_throughput_b{batch_size}", args)


def data_path(check: Check, timeout: float) -> dict:
    args = ["--frames", "4", "--size", "64", "--rounds", "1"] if check.quick else []
    return benchmark(check, timeout, "data_path.py", "data_path", args)


def e2e_sizes(quick: bool) -> dict:
    if quick:
        return dict(n_train=6, n_val=3, width=128, height=64, size=64, netG="unet_64", ngf=8, ndf=8, epochs=2,
                    scorer_base=8, scorer_epochs=1)
    # 100 frames x 10 epochs = 1,000 iterations at 256x256 with the paper's networks
    return dict(n_train=100, n_val=20, width=512, height=256, size=256, netG="unet_256", ngf=64, ndf=64, epochs=10,
                scorer_base=16, scorer_epochs=8)


def start_city(check: Check) -> tuple[subprocess.Popen, Path, float]:
    """Draw the city and prepare the A|B pairs in the background (CPU work) while the GPU sections run."""
    s, work = e2e_sizes(check.quick), check.out / "e2e"
    work.mkdir(exist_ok=True)
    py = shlex.quote(sys.executable)
    script = (f"{py} datasets/make_synthetic_cityscapes.py --out {shlex.quote(str(work / 'city'))} --train "
              f"{s['n_train']} --val {s['n_val']} --seed 0 --width {s['width']} --height {s['height']} && "
              f"{py} datasets/prepare_cityscapes_dataset.py --gtFine_dir {shlex.quote(str(work / 'city/gtFine'))} "
              f"--leftImg8bit_dir {shlex.quote(str(work / 'city/leftImg8bit'))} --output_dir "
              f"{shlex.quote(str(work / 'pairs'))} --size {s['size']}")
    log = open(work / "data.log", "w")
    proc = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=check.env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, work, time.monotonic()


def end_to_end(check: Check, city: tuple[subprocess.Popen, Path, float], timeout: float) -> dict:
    proc, work, t_city = city
    s = e2e_sizes(check.quick)
    deadline = time.monotonic() + timeout
    steps: list[dict] = []
    res: dict = dict(sizes=s, steps=steps)
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        steps.append(dict(cmd="make_synthetic_cityscapes.py && prepare_cityscapes_dataset.py (in the background "
                              "since the start)", status="ok" if rc == 0 else f"failed (exit {rc})",
                          seconds=round(time.monotonic() - t_city, 1), log="e2e/data.log"))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        steps.append(dict(cmd="data", status="stopped at its time share", seconds=round(timeout, 1)))
    if steps[-1]["status"] != "ok":
        return res
    py, dev = sys.executable, check.device
    city, pairs, ck, results = work / "city", work / "pairs", work / "checkpoints", work / "results"
    scorer, name = work / "scorer" / "scorer.pth", "e2e_tradam"
    amp = [] if dev == "cpu" else ["--amp", "bf16", "--channels_last", "--cache_images", "--augment_on_device"]
    cmds = [
        ("train", [py, "train.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(ck),
                   "--direction", "BtoA", "--netG", s["netG"], "--ngf", str(s["ngf"]), "--ndf", str(s["ndf"]),
                   "--load_size", str(s["size"] + s["size"] // 8), "--crop_size", str(s["size"]),
                   "--n_epochs", str(s["epochs"]), "--n_epochs_decay", "0", "--save_epoch_freq", str(s["epochs"]),
                   "--optimizer", "tradam", "--num_threads", "0" if check.quick else "4", "--device", dev,
                   "--print_freq", "100", *amp]),
        ("test", [py, "test.py", "--dataroot", str(pairs), "--name", name, "--checkpoints_dir", str(ck),
                  "--results_dir", str(results), "--eval", "--num_threads", "0", "--device", dev]),
        ("train_scorer", [py, "-m", "evaluation.train_scorer", "--cityscapes_dir", str(city), "--output",
                          str(scorer), "--arch", "fcn8s_small", "--base", str(s["scorer_base"]), "--epochs",
                          str(s["scorer_epochs"]), "--image_size", str(s["size"]), "--num_workers", "0",
                          "--device", dev, "--no_eval", "--no_progress"]),
        ("fcn_score_real", [py, "-m", "evaluation.fcn_score", "--real", "--cityscapes_dir", str(city), "--scorer",
                            str(scorer), "--output_dir", str(work / "fcn/real"), "--real_size", str(s["size"]),
                            "--label", "GT", "--device", dev]),
        ("fcn_score_synthesized", [py, "-m", "evaluation.fcn_score", "--result_dir",
                                   str(results / name / "val_latest"), "--cityscapes_dir", str(city), "--scorer",
                                   str(scorer), "--output_dir", str(work / "fcn" / name), "--label", "TRAdam",
                                   "--device", dev]),
        ("compare_runs", [py, "-m", "evaluation.compare_runs", str(work / "fcn/real"), str(work / "fcn" / name),
                          "--output", str(work / "fcn_score_table.md")]),
    ]
    for key, cmd in cmds:
        step = check.run(cmd, deadline - time.monotonic(), work / f"{key}.log")
        step.update(step=key, log=f"e2e/{key}.log")
        steps.append(step)
        if key == "train" and step["status"] == "ok":
            res["train_iters"] = s["n_train"] * s["epochs"]
            res["train_its_per_s"] = round(res["train_iters"] / step["seconds"], 2)  # start-up included
        if step["status"] != "ok":
            break
    table = work / "fcn_score_table.md"
    if table.exists():
        res["fcn_score_table"] = table.read_text()
    return res


# ----------------------------------------------------------------------------------------------------- report
def _md_optimizer(result: dict) -> str:
    out = [f"`{result['header']}`, torch {result['torch']}, cycles of {result['period']} steps, "
           f"{result['repeats']} paired repeats\n"]
    for fam, rows in result["tables"].items():
        base = "torch Adam fused" if fam == "adam" else "torch SGD fused"
        out += [f"| {fam}: optimizer | ms/step | vs {base} |", "|---|---|---|"]
        out += [f"| {name} | {r['ms_per_step']:.2f} | {r['vs_fused']:.2f}x |" for name, r in rows.items()]
        out.append("")
    return "\n".join(out)


def _md_throughput(result: dict) -> str:
    rows = result["rows"]
    out = [f"`{result['header']}`\n", "| configuration | it/s | s/iter | G opt step s | speed-up vs original | "
           "G_L1 it 1 rel. diff | peak GiB |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        peak = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "-"
        out.append(f"| {name} | {r['its_per_s']:.2f} | {r['s_per_iter']:.4f} | {r['g_opt_step_s']:.4f} | "
                   f"{r['speedup']:.2f}x | {r['first_G_L1_rel_diff']:.1e} | {peak} |")
    if result.get("batch_size") == 1 and result.get("size") == 256 and result.get("ngf") == 64:
        out.append("\nEstimated wall-clock of the paper's full Cityscapes run (2,975 frames x 200 epochs = "
                   f"{PAPER_ITERS:,} iterations at batch 1), from the measured it/s (steps only, no data loading):")
        for name in ("original", "ours"):
            if name in rows:
                out.append(f"- {name}: {PAPER_ITERS / rows[name]['its_per_s'] / 3600:.1f} h")
    return "\n".join(out)


def _md_data_path(result: dict) -> str:
    table = result["table"]
    base = table["decode"]["load_ms_per_sample"]
    out = [f"{result['files']} files of {2 * result['size']}x{result['size']}, load {result['load_size']} crop "
           f"{result['crop_size']}, batch {result['batch_size']}, device {result['device']}", "",
           "| configuration | loader ms/sample | vs decode | device ms/batch | kB/sample to device |",
           "|---|---|---|---|---|"]
    for name, r in table.items():
        out.append(f"| {name} | {r['load_ms_per_sample']:.2f} | {r['load_ms_per_sample'] / base:.3f}x | "
                   f"{r['device_ms_per_batch']:.2f} | {r['bytes_per_sample'] / 1e3:.0f} |")
    return "\n".join(out)


def render(data: dict) -> str:
    a, secs = data["args"], data["sections"]
    lines = ["# GPU check", "", f"`python benchmarks/gpu_check.py --device {a['device']} --budget_s {a['budget_s']:.0f}"
             + (" --quick`" if a["quick"] else "`") + f", {data.get('elapsed_s', 0):.0f} s in all"
             + (f"; stopped early: {data['stopped']}" if data.get("stopped") else "") + ".", ""]
    env = secs.get("environment")
    if env:
        lines += ["## Environment", ""] + [f"- {k}: {v}" for k, v in env["result"].items()] + [""]

    def head(title: str, sec: dict) -> None:
        lines.extend([f"## {title}", "", f"`{sec.get('cmd', '')}`: {sec.get('status')} in {sec.get('seconds')} s",
                      ""])

    if "pytest_cuda" in secs:
        sec = secs["pytest_cuda"]
        head("pytest -m cuda", sec)
        lines += [f"Summary: **{sec.get('summary', '(none)')}**", ""] + [f"- {f}" for f in sec.get("failures", [])]
        lines.append("")
    if "optimizer_step" in secs:
        sec = secs["optimizer_step"]
        head("Optimizer step", sec)
        lines += [_md_optimizer(sec["result"]) if "result" in sec else "(no table: see optimizer_step.log)", ""]
    for bs in (1, 16):
        key = f"throughput_b{bs}"
        if key in secs:
            sec = secs[key]
            head(f"Training throughput, batch {bs}", sec)
            lines += [_md_throughput(sec["result"]) if "result" in sec else f"(no table: see {key}.log)", ""]
    if "data_path" in secs:
        sec = secs["data_path"]
        head("Data path", sec)
        lines += [_md_data_path(sec["result"]) if "result" in sec else "(no table: see data_path.log)", ""]
    if "end_to_end" in secs:
        sec = secs["end_to_end"]
        lines += ["## End to end on the synthetic city", "", f"Sizes: {sec['sizes']}", "",
                  "| step | status | seconds | command |", "|---|---|---|---|"]
        lines += [f"| {st.get('step', 'data')} | {st['status']} | {st['seconds']} | `{st['cmd'][:160]}` |"
                  for st in sec["steps"]]
        if "train_its_per_s" in sec:
            lines += ["", f"train.py: {sec['train_iters']} iterations, {sec['train_its_per_s']} it/s including "
                          "start-up, data loading and checkpoints."]
        if "fcn_score_table" in sec:
            lines += ["", "FCN-score (the scorer is trained for a few epochs on this synthetic city: a check that the "
                          "pipeline runs, not the paper's numbers):", "", sec["fcn_score_table"]]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for report.md, gpu_check.json and the logs")
    p.add_argument("--budget_s", type=float, default=300.0, help="stop cleanly after this many seconds")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: the same steps, quick enough for a CPU (report.md gives the time it took)")
    args = p.parse_args(argv)
    if args.budget_s <= 0:
        p.error(f"--budget_s {args.budget_s:g}: give a positive number of seconds, e.g. --budget_s 300")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device is visible here; use --device cpu --quick for the CPU "
                "version of the check")
    try:
        torch.empty(1, device=args.device)
    except (RuntimeError, AssertionError) as exc:
        p.error(f"--device {args.device}: not usable here ({str(exc).splitlines()[0]}); use --device cpu")
    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        p.error(f"--out {args.out} is a file; give a folder (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.budget_s, args.device, args.quick)

    def on_signal(signum, frame):
        check.stop_current()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    city = None
    try:
        t = time.monotonic()
        check.data["sections"]["environment"] = dict(result=environment(check), seconds=round(time.monotonic() - t, 1))
        check.save()
        city = start_city(check)
        reserve = SHARES["end_to_end"] * args.budget_s
        for name, fn in (("pytest_cuda", pytest_cuda), ("optimizer_step", optimizer_step),
                         ("throughput_b1", lambda c, t_: throughput(c, t_, 1)),
                         ("throughput_b16", lambda c, t_: throughput(c, t_, 16)), ("data_path", data_path)):
            print(f"[gpu_check] {name} ({check.left():.0f} s of the budget left)", flush=True)
            check.data["sections"][name] = fn(check, check.share(name, reserve))
            check.save()
        print(f"[gpu_check] end_to_end ({check.left():.0f} s left)", flush=True)
        check.data["sections"]["end_to_end"] = end_to_end(check, city, max(0.0, check.left()))
        check.data["sections"]["end_to_end"]["seconds"] = round(
            sum(st["seconds"] for st in check.data["sections"]["end_to_end"]["steps"]), 1)
    except KeyboardInterrupt as exc:
        check.data["stopped"] = f"interrupted ({exc or 'Ctrl-C'})"
    finally:
        if city is not None and city[0].poll() is None:
            os.killpg(city[0].pid, signal.SIGKILL)
        check.save()
    print(render(check.data))
    print(f"\n[gpu_check] wrote {out / 'report.md'} and {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
