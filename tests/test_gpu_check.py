"""benchmarks/gpu_check.py: the one-command device check, run at its tiny CPU size so it cannot rot without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def run(args, timeout=400):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_quick_cpu_check_runs_every_section_and_writes_the_report(tmp_path):
    out = tmp_path / "gc"
    proc = run(["--out", str(out), "--device", "cpu", "--quick", "--budget_s", "170"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    secs = data["sections"]
    assert secs["environment"]["result"]["torch"] == torch.__version__
    summary = secs["pytest_cuda"]["summary"]
    assert secs["pytest_cuda"]["status"] == "ok" and ("skipped" in summary or "passed" in summary), summary
    adam = secs["optimizer_step"]["result"]["tables"]["adam"]
    assert adam["torch Adam fused"]["vs_fused"] == 1.0 and adam["TRAdam (default)"]["ms_per_step"] > 0
    for bs in (1, 16):
        rows = secs[f"throughput_b{bs}"]["result"]["rows"]
        assert {"original", "tradam"} <= set(rows) and rows["tradam"]["its_per_s"] > 0
        # same weights and inputs: TRAdam's first iteration has exactly the original recipe's losses
        assert rows["tradam"]["first_G_L1_rel_diff"] == 0.0
    data_rows = secs["data_path"]["result"]["table"]
    assert set(data_rows) == {"decode", "cache", "cache+device"}
    assert all(r["load_ms_per_sample"] > 0 for r in data_rows.values())
    assert data_rows["cache+device"]["bytes_per_sample"] < data_rows["decode"]["bytes_per_sample"]  # uint8
    e2e = secs["end_to_end"]
    assert [s["status"] for s in e2e["steps"]] == ["ok"] * 7, e2e["steps"]
    assert "| TRAdam |" in e2e["fcn_score_table"] and "| GT |" in e2e["fcn_score_table"]
    report = (out / "report.md").read_text()
    for title in ("## Environment", "## pytest -m cuda", "## Optimizer step", "## Training throughput, batch 1",
                  "## Training throughput, batch 16", "## Data path", "## End to end on the synthetic city"):
        assert title in report
    assert data["elapsed_s"] < 170


@pytest.mark.slow
def test_a_tiny_budget_stops_cleanly_and_still_writes_what_it_has(tmp_path):
    out = tmp_path / "gc"
    proc = run(["--out", str(out), "--device", "cpu", "--quick", "--budget_s", "6"], timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    statuses = [s.get("status", "") for s in data["sections"].values() if "status" in s]
    statuses += [s["status"] for s in data["sections"]["end_to_end"]["steps"]]
    assert any(s.startswith(("stopped at its time share", "skipped: no time left")) for s in statuses), statuses
    assert data["elapsed_s"] < 6 + 30  # its own share ends, plus the time to stop a running command
    assert "## Environment" in (out / "report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["--budget_s", "0", "--device", "cpu"], "--budget_s 0: give a positive number of seconds"),
    (["--device", "cuda"], "no CUDA device is visible here; use --device cpu --quick"),
])
def test_bad_flags_get_one_clear_sentence(tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = run(["--out", str(tmp_path / "gc"), *args], timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
