"""The CUDA path: AMP (fp16 with a GradScaler per network, bf16), DDP over NCCL, exact resume with deterministic
algorithms, test.py and the FCN-score. Every test is marked ``cuda`` and skipped where no GPU is visible (CI);
``python benchmarks/gpu_check.py`` runs them on a GPU machine. The optimizers' CUDA tests are in
tests/test_optim_capturable.py."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]


def tiny_args(ab_root, ckpt, name, *extra):
    return ["--dataroot", str(ab_root), "--checkpoints_dir", str(ckpt), "--name", name, "--ngf", "8", "--ndf", "8",
            "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size", "2", "--num_threads", "0",
            "--n_epochs", "1", "--n_epochs_decay", "1", "--save_epoch_freq", "1", "--print_freq", "1",
            "--device", "cuda", "--seed", "3", *extra]


def cli(*args, env=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
@pytest.mark.parametrize("optimizer", ["tradam", "trsgd"])
def test_training_on_cuda_with_each_amp_mode(ab_root, tmp_path, amp, optimizer):
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import train

    result = train(parse_train(tiny_args(ab_root, tmp_path, "amp", "--amp", amp, "--optimizer", optimizer,
                                         "--channels_last")))
    assert result.status == "finished" and result.total_iters == 8
    assert all(p.is_cuda for p in result.G.parameters())
    with open(tmp_path / "amp/loss_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 8 and all(math.isfinite(float(r["G_L1"])) for r in rows)
    state = torch.load(tmp_path / "amp/training_state.pth", weights_only=True, map_location="cpu")
    assert bool(state["scaler_G"]) == (amp == "fp16") and bool(state["scaler_D"]) == (amp == "fp16")
    first = {k: v.float() for k, v in torch.load(tmp_path / "amp/1_net_G.pth", weights_only=True).items()}
    last = {k: v.float() for k, v in torch.load(tmp_path / "amp/latest_net_G.pth", weights_only=True).items()}
    assert any(not torch.equal(first[k], last[k]) for k in first)  # it trained


RESUME_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.use_deterministic_algorithms(True)
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import train
    result = train(parse_train(sys.argv[2:]))
    torch.save({k: v.cpu() for k, v in result.G.state_dict().items()}, sys.argv[1])
""")


def test_resume_on_cuda_is_exact_with_deterministic_algorithms(ab_root, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    cli(str(script), str(tmp_path / "ref.pt"), *tiny_args(ab_root, tmp_path, "ref"), env=env)
    cli(str(script), str(tmp_path / "half.pt"), *tiny_args(ab_root, tmp_path, "r", "--max_iters", "3"), env=env)
    cli(str(script), str(tmp_path / "resumed.pt"), *tiny_args(ab_root, tmp_path, "r", "--continue_train"), env=env)
    ref, resumed = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "resumed.pt")
    assert ref.keys() == resumed.keys()
    for k in ref:
        assert torch.equal(ref[k], resumed[k]), f"{k} differs after a resume on CUDA"


def test_ddp_over_nccl_with_one_process_equals_plain_training(tmp_path):
    import torch.distributed as dist

    from pix2pix_tr.models import GANLoss, define_D, define_G
    from pix2pix_tr.models.pix2pix import train_step
    from pix2pix_tr.optim import TRAdam
    from pix2pix_tr.training.distributed import DistContext, ddp_wrap

    device = torch.device("cuda", 0)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        ctx = DistContext(device=device, rank=0, world_size=1)
        nets = []
        for _ in range(2):
            torch.manual_seed(0)
            nets.append((define_G("unet_64", ngf=8).to(device), define_D("basic", ndf=8).to(device)))
        (G1, D1), (G2, D2) = nets
        G1_run, D1_run = ddp_wrap(G1, D1, ctx)
        gen = torch.Generator().manual_seed(1)
        A, B = (torch.rand(2, 3, 64, 64, generator=gen).to(device) * 2 - 1 for _ in range(2))
        gan = GANLoss("vanilla").to(device)
        opts = [(TRAdam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)), TRAdam(D.parameters(), lr=2e-4,
                                                                              betas=(0.5, 0.999)))
                for G, D in ((G1, D1), (G2, D2))]
        for it in range(3):
            for (G_run, D_run, D_local), (opt_G, opt_D) in zip(((G1_run, D1_run, D1), (G2, D2, D2)), opts):
                torch.manual_seed(10 + it)
                for buf in D_local.buffers():
                    dist.broadcast(buf, src=0)  # what DistContext.sync_buffers does with several processes
                train_step(G_run, D_run, opt_G, opt_D, A, B, gan_loss=gan, D_local=D_local)
        torch.cuda.synchronize()
        for a, b in zip(list(G1.parameters()) + list(D1.parameters()), list(G2.parameters()) + list(D2.parameters())):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    finally:
        dist.destroy_process_group()


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted(folder.glob("*_fake_B.png"))}


def test_test_py_and_fcn_score_on_cuda_match_the_cpu(ab_root, synthetic_city, tmp_path):
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import train

    train(parse_train(tiny_args(ab_root, tmp_path / "ck", "t", "--max_iters", "4")))
    runs = {}
    for dev in ("cuda", "cpu"):
        out = tmp_path / f"results_{dev}"
        cli("test.py", "--dataroot", str(ab_root), "--name", "t", "--checkpoints_dir", str(tmp_path / "ck"),
            "--results_dir", str(out), "--eval", "--num_threads", "0", "--device", dev)
        runs[dev] = out / "t" / "val_latest"
    cuda_png, cpu_png = _pngs(runs["cuda"] / "images"), _pngs(runs["cpu"] / "images")
    assert cuda_png.keys() == cpu_png.keys() and cuda_png
    assert max(int(np.abs(cuda_png[k] - cpu_png[k]).max()) for k in cuda_png) <= 2  # eval mode: rounding only
    scorer = tmp_path / "scorer.pth"
    cli("-m", "evaluation.train_scorer", "--cityscapes_dir", str(synthetic_city), "--output", str(scorer),
        "--arch", "fcn8s_small", "--base", "4", "--epochs", "1", "--image_size", "64", "--num_workers", "0",
        "--device", "cuda", "--no_eval", "--no_progress")
    scores = {}
    for dev in ("cuda", "cpu"):
        out = tmp_path / f"fcn_{dev}"
        cli("-m", "evaluation.fcn_score", "--result_dir", str(runs["cpu"]), "--cityscapes_dir", str(synthetic_city),
            "--scorer", str(scorer), "--output_dir", str(out), "--device", dev)
        scores[dev] = json.loads((out / "evaluation_results.json").read_text())["scores"]
    for key in ("per_pixel_acc", "per_class_acc", "class_iou"):
        assert scores["cuda"][key] == pytest.approx(scores["cpu"][key], abs=2e-3), key


def test_augment_on_device_on_cuda_equals_the_cpu_batches(ab_root):
    from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader

    kw = dict(load_size=72, crop_size=64, seed=3, direction="BtoA")
    plain = AlignedDataset(ab_root, "train", **kw)
    on_device = AlignedDataset(ab_root, "train", augment_on_device=True, cache_images=True, **kw)
    sampler = EpochSampler(len(plain), shuffle=True, seed=1)
    sampler.set_epoch(2)
    want = [plain.to_device(b, "cpu") for b in make_dataloader(plain, 3, sampler)]
    got = [on_device.to_device(b, "cuda", torch.channels_last)
           for b in make_dataloader(on_device, 3, sampler, pin_memory=True)]
    assert len(got) == len(want)
    for (a, b), (wa, wb) in zip(got, want):
        assert a.device.type == "cuda" and a.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a.cpu(), wa) and torch.equal(b.cpu(), wb)  # the table makes it exact
