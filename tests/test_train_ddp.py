"""Two-process DistributedDataParallel training on CPU (gloo) through torchrun, as users launch it."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

RANK_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import train

    out = sys.argv[1]
    result = train(parse_train(sys.argv[2:]))
    rank = int(os.environ["RANK"])
    torch.save({"G": {n: p.detach() for n, p in result.G.named_parameters()},
                "D": {n: p.detach() for n, p in result.D.named_parameters()},
                "total_iters": result.total_iters, "world": int(os.environ["WORLD_SIZE"])},
               os.path.join(out, f"rank{rank}.pt"))
""")


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_identical(ab_root, tmp_path):
    script = tmp_path / "rank_main.py"
    script.write_text(RANK_SCRIPT)
    ckpt = tmp_path / "ckpt"
    args = ["--dataroot", str(ab_root), "--checkpoints_dir", str(ckpt), "--name", "ddp", "--ngf", "8", "--ndf", "8",
            "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size", "1", "--num_threads", "0",
            "--n_epochs", "1", "--n_epochs_decay", "0", "--max_dataset_size", "4", "--print_freq", "1",
            "--device", "cpu", "--seed", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # 4 images over 2 ranks at batch 1: 2 iterations per rank, gradients averaged by DDP
    assert r0["total_iters"] == r1["total_iters"] == 2 and r0["world"] == 2
    for net in ("G", "D"):
        assert r0[net].keys() == r1[net].keys()
        for name in r0[net]:
            assert torch.equal(r0[net][name], r1[net][name]), f"{net}.{name} differs between ranks"
    # only rank 0 wrote files, and what it wrote is the shared state
    saved = torch.load(ckpt / "ddp/latest_net_G.pth", weights_only=True)
    assert all(torch.equal(saved[n], r0["G"][n]) for n in r0["G"])
    # the run actually trained: the log shows both iterations, once (rank 0 only)
    rows = (ckpt / "ddp/loss_log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2


SYNC_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])  # tests/, for host_reads
    from host_reads import HostReads, host_step_counters
    import pix2pix_tr.training.loop as loop
    from pix2pix_tr.options import parse_train

    built = []
    real_build = loop.build_optimizers
    loop.build_optimizers = lambda *a, **k: built.append(real_build(*a, **k)) or built[-1]
    with HostReads() as reads:
        result = loop.train(parse_train(sys.argv[3:]), after_iteration=reads.next_iteration)
    host = host_step_counters(*built[0][:2])
    found = {i: reads.at(i, host) for i in range(1, result.total_iters + 2)}
    with open(os.path.join(sys.argv[2], f"reads{os.environ['RANK']}.json"), "w") as handle:
        json.dump({"total_iters": result.total_iters, "reads": found}, handle)
""")


@pytest.mark.slow
def test_two_process_gloo_run_reads_nothing_on_the_host_between_log_rows(ab_root, tmp_path):
    """Under DDP the ranks agree on a stop only at log rows and epoch ends, so an iteration between log rows
    reads no tensor value on the host, on either rank (tests/host_reads.py says what counts as a read)."""
    script = tmp_path / "rank_sync.py"
    script.write_text(SYNC_SCRIPT)
    args = ["--dataroot", str(ab_root), "--checkpoints_dir", str(tmp_path / "ckpt"), "--name", "ddp", "--ngf", "8",
            "--ndf", "8", "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size", "1",
            "--num_threads", "0", "--n_epochs", "1", "--n_epochs_decay", "0", "--print_freq", "3",
            "--display_freq", "1", "--device", "cpu", "--seed", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(Path(__file__).parent), str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        data = json.loads((tmp_path / f"reads{rank}.json").read_text())
        assert data["total_iters"] == 4  # 8 images over 2 ranks at batch 1
        for iteration in (2, 4):  # 3 has the log row (check, stop agreement); 1 the start; 5 the epoch end
            assert data["reads"][str(iteration)] == [], (rank, iteration, data["reads"][str(iteration)])
        assert data["reads"]["3"]  # the counter sees the log row's reads
