"""The TR ablation harness (experiments/ablation.py), its statistics (experiments/stats.py) and the digits data."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from experiments import ablation, stats


def test_digits_split_is_fixed_stratified_and_real():
    from experiments.data import load_digits_split

    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1257, 8, 8) and x_te.shape == (540, 8, 8)
    assert 0.0 <= x_tr.min() and x_tr.max() == 1.0
    # stratified: every class is ~30% test
    for c in range(10):
        share = (y_te == c).sum() / ((y_te == c).sum() + (y_tr == c).sum())
        assert abs(share - 0.3) < 0.02
    again = load_digits_split()
    assert np.array_equal(again[0], x_tr) and np.array_equal(again[3], y_te)


def test_seed_batched_model_equals_separate_runs():
    """All seeds as one batched model == one run per seed (same initial weights and batches), to float64
    rounding (the batched matrix products sum in another order, so not bit for bit)."""
    data = ablation.load_digits_tensors(max_train=96)
    seeds = [3, 7]
    for family, arm, lr in (("sgd", "tr", 0.1), ("adam", "reference", 1e-3)):
        key = ablation.RunKey.make(family, arm, 8, lr, 0.5, 4)
        together = ablation.train_arm(key, seeds, data, epochs=3, hidden=6, dtype=torch.float64)
        for i, s in enumerate(seeds):
            alone = ablation.train_arm(key, [s], data, epochs=3, hidden=6, dtype=torch.float64)
            assert [ep[0] for ep in alone["curves"]["train_loss"]] == pytest.approx(
                [ep[i] for ep in together["curves"]["train_loss"]], rel=1e-12)
            assert [ep[0] for ep in alone["curves"]["test_loss"]] == pytest.approx(
                [ep[i] for ep in together["curves"]["test_loss"]], rel=1e-12)  # batched matmuls round differently
            assert alone["final_test_acc"][0] == together["final_test_acc"][i]
        assert together["final_train_loss"][0] != together["final_train_loss"][1]  # the seeds do differ


def test_arms_differ_and_period_one_is_the_base_exactly():
    data = ablation.load_digits_tensors(max_train=64)
    runs = {}
    settings = [ablation.Setting(fam, "S", s, 16, lr, 0.5, s) for fam, lr in (("sgd", 0.1), ("adam", 1e-3))
                for s in (1, 4)]
    for key in ablation.unique_keys(settings):
        runs[key.text()] = ablation.train_arm(key, [0, 1], data, epochs=2, hidden=5)
    checks = ablation.check_period_one(runs, settings)
    assert len(checks) == 4 + 5  # sgd: matched, tr, prox, decay, reference; adam: all but reference
    fp = {k: r["fingerprints"][0] for k, r in runs.items()}
    s4 = [fp[st.key(a).text()] for st in settings if st.period == 4 and st.family == "sgd" for a in ablation.ARMS]
    assert len(set(s4)) == len(ablation.ARMS)  # at S = 4 every arm is a different algorithm
    # a corrupted S = 1 run is caught
    bad = dict(runs)
    key = settings[0].key("tr").text()
    bad[key] = {**runs[key], "fingerprints": ["0" * 16, "0" * 16]}
    with pytest.raises(AssertionError, match="S = 1 must equal the base optimizer"):
        ablation.check_period_one(bad, settings)


def test_a_diverged_seed_is_counted_not_dropped():
    data = ablation.load_digits_tensors(max_train=64)
    key = ablation.RunKey.make("sgd", "base", 4, 1e6, 0.1, 10)  # an absurd lr blows up
    run = ablation.train_arm(key, [0, 1], data, epochs=2, hidden=5)
    assert all(run["diverged"])
    res = stats.bootstrap_ci(ablation.values(run, "final_test_acc"))
    assert res["n"] == 0 and res["diverged"] == 2 and "diverged" in stats.fmt_ci(res)


def test_bootstrap_and_paired_difference():
    res = stats.bootstrap_ci([1.0, 2.0, 3.0, 4.0, math.nan])
    assert res["mean"] == 2.5 and res["diverged"] == 1 and 1.0 <= res["lo"] < 2.5 < res["hi"] <= 4.0
    # a constant +0.1 on noisy paired values is resolved; unpaired noise of the same size is not
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 12)
    assert stats.paired_difference(base + 0.1, base)["resolved"]
    noisy = stats.paired_difference(rng.normal(0, 1, 12), rng.normal(0, 1, 12))
    assert noisy["lo"] < 0 < noisy["hi"] and not noisy["resolved"]
    with pytest.raises(ValueError, match="one value per seed"):
        stats.paired_difference([1.0, 2.0], [1.0])


@pytest.mark.slow
def test_smoke_preset_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "abl"
    assert ablation.main(["--preset", "smoke", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == len(ablation.unique_keys(ablation.plan_settings(results["config"])))
    assert len(results["period_one_checks"]) == 2 * 5 - 1  # per family, S = 1 of every arm (not Adam's reference)
    table = (out / "table.md").read_text()
    assert "TR − matched" in table and "λ 1" in table and "batch 64" in table
    page = (out / "index.html").read_text()
    for src in re.findall(r"(?:src|href)='([^']+)'", page):  # every link resolves inside the folder
        assert (out / src).is_file(), src
    assert str(tmp_path) not in page
    # a rerun into the same folder keeps every finished run (an interrupted or extended ablation resumes)
    capsys.readouterr()
    assert ablation.main(["--preset", "smoke", "--out", str(out)]) == 0
    assert f"({len(results['runs'])} already there)" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    # the conclusion is read from conclusion.html on --report_only
    (out / "conclusion.html").write_text("<p>measured conclusion</p>")
    assert ablation.main(["--report_only", "--out", str(out)]) == 0
    assert "measured conclusion" in (out / "index.html").read_text()


def test_report_only_without_results_says_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--report_only", "--out", str(tmp_path / "none")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--report_only needs" in err and "run the ablation into --out" in err


def test_small_batch_runs_on_digits_with_restarts(tmp_path):
    from experiments import small_batch

    out = tmp_path / "sb"
    assert small_batch.main(["--dataset", "digits", "--models", "smallcnn", "--width", "8", "--optimizers", "sgd",
                             "trsgd", "--tr_mode", "reference", "--tr_restart_each_epoch", "--batch_sizes", "64",
                             "--seeds", "0", "--epochs", "2", "--threads", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["train_size"] == 1257 and results["meta"]["test_size"] == 540
    assert results["settings"]["tr_restart_each_epoch"] is True
    accs = [r["final_test_acc"] for r in results["runs"]]
    assert all(a > 0.3 for a in accs), accs  # real digits are learnable within 2 epochs (chance is 0.1)


def test_one_json_rule_and_one_optimizer_factory_for_every_experiment():
    """Issue 19.3: the experiments write JSON with pix2pix_tr.cli.json_clean (NaN -> null, inf -> "inf") and
    build optimizers with experiments.common.make_optimizer; the ablation no longer imports small_batch (and with
    it the CIFAR loader)."""
    import subprocess
    import sys

    from experiments import common, small_batch, variance
    from pix2pix_tr.cli import json_clean

    assert json_clean({"a": [math.nan, math.inf, -math.inf, 0.1234567891], "b": (1, True, None)},
                      significant=6) == {"a": [None, "inf", "-inf", 0.123457], "b": [1, True, None]}
    assert json.loads(json.dumps(json_clean(float("nan")))) is None
    w = torch.zeros(3, requires_grad=True)
    for opt in (ablation.build_optimizer(ablation.RunKey.make("sgd", "base", 8, 0.1, 0.1, 10), [w]),
                small_batch.build_optimizer("sgd", [w]), variance._optimizer("sgd", w, 0.1, 0.9, 0.1, 10)):
        assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0.9
    for module in (ablation, small_batch, variance):
        assert module.make_optimizer is common.make_optimizer
    code = "import sys, experiments.ablation; print('experiments.small_batch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.parametrize("flags,named", [(["--epochs", "0"], "--epochs"), (["--epochs", "1"], "--epochs"),
                                         (["--threads", "0"], "--threads"), (["--seeds", "1", "1"], "--seeds")])
def test_a_bad_override_is_refused_not_replaced_by_the_preset(tmp_path, capsys, flags, named):
    """Issue 21: 'ablation --epochs 0 is silently replaced by the preset's value'."""
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(["--preset", "smoke", "--out", str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_rerun_with_other_settings_is_refused_and_fresh_replaces_cleanly(tmp_path, capsys):
    """Issue 21 #11's rule for every tool with an output folder: continue exactly, replace cleanly, or refuse."""
    out = tmp_path / "out"
    small = ["--preset", "smoke", "--out", str(out), "--seeds", "0", "--epochs", "2"]
    assert ablation.main(small) == 0
    (out / "curves_extra.png").write_bytes(b"a plot of an older plan")
    (out / "conclusion.html").write_text("<p>mine</p>")
    before = (out / "results.json").read_bytes()
    assert ablation.main(small[:-1] + ["3"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "epochs 2 (now 3)" in err and "--fresh" in err
    assert (out / "results.json").read_bytes() == before
    assert ablation.main(small[:-1] + ["3", "--fresh"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["epochs"] == 3
    assert not (out / "curves_extra.png").exists() and (out / "conclusion.html").read_text() == "<p>mine</p>"
