"""experiments/: the CIFAR loader, the synthetic set, the small-batch harness end to end, and the variance check."""

from __future__ import annotations

import json
import pickle
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # experiments/ is a folder of scripts, not part of the installed package
    sys.path.insert(0, str(ROOT))

from experiments import small_batch, variance  # noqa: E402
from experiments.data import (DatasetError, DatasetNotFoundError, BatchLoader, load_cifar,  # noqa: E402
                              make_synthetic_shapes)
from experiments.models import build_model  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The CLIs call torch.set_num_threads; give the rest of the suite its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------- CIFAR


def _fake_batch(n: int, offset: int, label_key: bytes) -> dict:
    rng = np.random.default_rng(offset)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[:, 0] = 200   # red channel, pixel (0, 0)
    data[:, 1024] = 100  # green channel, pixel (0, 0)
    data[:, 2048 + 33] = 7  # blue channel, pixel (1, 1)
    return {b"data": data, label_key: [(offset + i) % 10 for i in range(n)], b"batch_label": b"fake"}


def _write_fake_cifar10(root: Path, per_batch: int = 3, test: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_fake_batch(per_batch, i, b"labels")))
    (folder / "test_batch").write_bytes(pickle.dumps(_fake_batch(test, 99, b"labels")))
    return folder


def test_cifar10_loader_reads_the_pickle_layout(tmp_path):
    folder = _write_fake_cifar10(tmp_path)
    train = load_cifar(tmp_path, "cifar10", "train")
    assert train.images.shape == (15, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.num_classes == 10
    # channel-planar rows -> HWC: the pixels we planted are where they belong
    assert (train.images[:, 0, 0, 0] == 200).all() and (train.images[:, 0, 0, 1] == 100).all()
    assert (train.images[:, 1, 1, 2] == 7).all()
    assert train.labels.tolist() == [(b + i) % 10 for b in range(1, 6) for i in range(3)]
    test = load_cifar(folder, "cifar10", "test")  # the sub-folder itself works too
    assert len(test) == 2 and test.labels.tolist() == [9, 0]


def test_cifar100_loader_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 4), ("test", 2)):
        batch = _fake_batch(n, 5, b"fine_labels")
        batch[b"fine_labels"] = [42 + i for i in range(n)]
        batch[b"coarse_labels"] = [0] * n
        (folder / name).write_bytes(pickle.dumps(batch))
    train = load_cifar(tmp_path, "cifar100", "train")
    assert train.num_classes == 100 and train.labels.tolist() == [42, 43, 44, 45]


def test_missing_cifar_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar(tmp_path, "cifar10", "train")
    message = str(err.value)
    assert "cifar-10-batches-py" in message and "data_batch_1" in message
    assert "never downloads" in message and "--dataset synthetic" in message


def test_cli_missing_cifar_exits_2_without_traceback(tmp_path, capsys):
    code = small_batch.main(["--dataset", "cifar10", "--data_dir", str(tmp_path / "nowhere"), "--epochs", "1",
                             "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: CIFAR-10 not found") and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_cli_cifar_without_data_dir_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        small_batch.main(["--dataset", "cifar100"])
    assert exit_info.value.code == 2
    assert "--dataset cifar100 needs --data_dir" in capsys.readouterr().err


def test_corrupt_cifar_file_is_named(tmp_path):
    folder = _write_fake_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=r"data_batch_3 is not a CIFAR python-pickle batch"):
        load_cifar(tmp_path, "cifar10", "train")


def test_unknown_optimizer_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        small_batch.main(["--preset", "smoke", "--optimizers", "sgd", "tr-nosuch"])
    assert exit_info.value.code == 2
    assert "unknown optimizer 'nosuch'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- data and models


def test_synthetic_set_is_deterministic_and_balanced():
    a, b = make_synthetic_shapes(40, seed=3, size=12), make_synthetic_shapes(40, seed=3, size=12)
    c = make_synthetic_shapes(40, seed=4, size=12)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert np.bincount(a.labels).tolist() == [4] * 10
    assert a.images.shape == (40, 12, 12, 3)


def test_batch_loader_pairs_runs_by_seed_and_augments_by_epoch():
    data = make_synthetic_shapes(20, seed=0, size=12)
    first = [y.tolist() for _, y in BatchLoader(data, 8, seed=1)]
    again = [y.tolist() for _, y in BatchLoader(data, 8, seed=1)]
    assert first == again and [len(y) for y in first] == [8, 8, 4]
    loader = BatchLoader(data, 20, seed=1, augment=True)
    x0 = next(iter(loader))[0]
    loader.set_epoch(1)
    assert not torch.equal(x0, next(iter(loader))[0])


def test_models_are_the_cifar_forms():
    net = build_model("resnet18", 10)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    dense = build_model("densenet121", 100)
    assert dense.features.conv0.kernel_size == (3, 3) and isinstance(dense.features.pool0, torch.nn.Identity)
    assert dense.classifier.out_features == 100
    assert build_model("resnet101", 10).fc.in_features == 2048
    assert build_model("smallcnn", 10, width=8)(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_build_optimizer_names():
    from pix2pix_tr.optim import TRAdam, TRSGD, TrajectoryRegularized

    params = [torch.nn.Parameter(torch.zeros(3))]
    trsgd = small_batch.build_optimizer("trsgd", params, tr_period=5)
    assert isinstance(trsgd, TRSGD) and trsgd.param_groups[0]["lr"] == 0.1
    assert trsgd.param_groups[0]["momentum"] == 0.9
    assert isinstance(small_batch.build_optimizer("tradam", params), TRAdam)
    wrapped = small_batch.build_optimizer("tr-rmsprop", params)
    assert isinstance(wrapped, TrajectoryRegularized) and isinstance(wrapped.base_optimizer, torch.optim.RMSprop)
    assert small_batch.build_optimizer("sgd@0.029", params).param_groups[0]["lr"] == 0.029
    assert small_batch.base_of("tr-adamw") == "adamw" and small_batch.is_tr("tradam@1e-4")


# ----------------------------------------------------------------------------------------- harness


def test_small_batch_harness_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert small_batch.main(["--preset", "smoke", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert len(runs) == 8  # 2 optimizers x 2 batch sizes x 2 seeds
    assert {(r["optimizer"], r["batch_size"], r["seed"]) for r in runs} == {
        (o, b, s) for o in ("sgd", "trsgd") for b in (8, 32) for s in (0, 1)}
    for r in runs:
        assert r["tr_period"] == (10 if r["optimizer"] == "trsgd" else None)
        assert len(r["curves"]["test_acc"]) == 2 and r["epochs_run"] == 2
        assert r["steps"] == 2 * (-(-160 // r["batch_size"]))  # ceil(160 / batch) steps per epoch
        assert 0.0 <= r["final_test_acc"] <= 1.0
        assert r["curves"]["lr"] == pytest.approx([0.1, 0.01])  # 50% / 75% of 2 epochs: one decay, at 1
    assert results["settings"]["epochs"] == 2 and results["meta"]["train_size"] == 160

    table = (out / "table.md").read_text()
    assert "| model | batch | S | SGD | TRSGD | Δ TRSGD − SGD (paired) |" in table
    sel = [r["final_test_acc"] for r in runs if r["optimizer"] == "trsgd" and r["batch_size"] == 8]
    expected = f"{100 * statistics.fmean(sel):.2f} ± {100 * statistics.stdev(sel):.2f} (n=2)"
    row = next(line for line in table.splitlines() if line.startswith("| smallcnn | 8 | 10 |"))
    assert row.split(" | ")[4] == expected
    for name in ("curves_synthetic_smallcnn_b8_S10.png", "curves_synthetic_smallcnn_b32_S10.png",
                 "accuracy_vs_batch.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300

    # resuming runs nothing again; other settings in the same folder are refused with a clear message
    capsys.readouterr()
    assert small_batch.main(["--preset", "smoke", "--out", str(out)]) == 0
    assert "8 runs (8 already in" in capsys.readouterr().out
    assert small_batch.main(["--preset", "smoke", "--out", str(out), "--epochs", "3"]) == 2
    assert "holds a sweep with different settings (epochs)" in capsys.readouterr().err
    # a sweep of fewer rows in the same folder leaves no plot of the rows it no longer has (issue 21 #11)
    assert small_batch.main(["--preset", "smoke", "--out", str(out), "--batch_sizes", "8"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["curves_synthetic_smallcnn_b8_S10.png"]
    assert "| 8 |" in (out / "table.md").read_text() and "| 32 |" not in (out / "table.md").read_text()


def _record(opt, batch, period, seed, acc, diverged=False):
    return dict(dataset="cifar10", model="resnet18", optimizer=opt, batch_size=batch, tr_period=period, seed=seed,
                final_test_acc=acc, best_test_acc=acc, diverged=diverged)


def test_markdown_table_shapes_an_S_sweep_like_table5():
    runs = [_record("sgd", 8, None, s, 0.90 + 0.01 * s) for s in (0, 1)]
    runs += [_record("trsgd", 8, p, s, 0.80 + 0.01 * p + 0.02 * s, diverged=(p == 1 and s == 1))
             for p in (1, 10) for s in (0, 1)]
    table = small_batch.markdown_table({"runs": runs})
    lines = table.splitlines()
    assert lines[0] == "| model | batch | S | SGD | TRSGD | Δ TRSGD − SGD (paired) |"
    # the SGD baseline (no S) is repeated on every S row; the paired difference is per seed
    assert lines[2] == "| resnet18 | 8 | 1 | 90.50 ± 0.71 (n=2) | 82.00 ± 1.41 (n=2) † | -8.50 ± 0.71 |"
    assert lines[3] == "| resnet18 | 8 | 10 | 90.50 ± 0.71 (n=2) | 91.00 ± 1.41 (n=2) | +0.50 ± 0.71 |"


# ---------------------------------------------------------------------------------------- variance


def test_trajectory_regulariser_reduces_iterate_variance():
    torch.set_num_threads(1)
    problem = variance.make_problem(n=256, d=10, seed=0)
    seeds = [0, 1, 2, 3]
    kwargs = dict(lr=0.01, momentum=0.9, burn_in=600, steps=1200)
    sgd = variance.measure(problem, "sgd", 2, seeds, **kwargs)
    tr = variance.measure(problem, "trsgd", 2, seeds, **kwargs)
    prox_only = variance.measure(problem, "trsgd-nodecay", 2, seeds, **kwargs)
    for a, b, c in zip(sgd, tr, prox_only):
        assert b["iterate_msd"] < 0.6 * a["iterate_msd"]  # measured: about 0.2-0.3x
        assert b["excess_loss"] < 0.6 * a["excess_loss"]
        assert c["iterate_msd"] < a["iterate_msd"]  # the proximal term alone helps a little (about 0.95x)


def test_variance_cli_writes_json_and_table(tmp_path):
    out = tmp_path / "var"
    assert variance.main(["--batch_sizes", "4", "--seeds", "0", "1", "--burn_in", "50", "--steps", "100",
                          "--n", "64", "--d", "4", "--out", str(out)]) == 0
    results = json.loads((out / "variance.json").read_text())
    assert len(results["runs"]) == 5 * 2 and results["settings"]["batch_sizes"] == [4]
    text = (out / "variance.md").read_text()
    assert "| batch | sgd | trsgd | trsgd-nodecay | sgd-matched | trsgd-reference | trsgd / sgd |" in text
    assert re.search(r"^\| 4 \| [0-9.e+-]+ ± ", text, re.M)


def test_variance_sweeps_lambda_and_lr_cuts(tmp_path):
    out = tmp_path / "var"
    assert variance.main(["--batch_sizes", "2", "--seeds", "0", "1", "2", "--burn_in", "50", "--steps", "100",
                          "--n", "64", "--d", "4", "--tr_lambdas", "0.1", "2", "--lr_factors", "1", "0.1",
                          "--out", str(out)]) == 0
    runs = json.loads((out / "variance.json").read_text())["runs"]
    # per lr factor: sgd and sgd-matched once, the three lambda-dependent optimizers once per lambda
    assert len(runs) == 2 * (2 + 3 * 2) * 3
    text = (out / "variance.md").read_text()
    assert re.search(r"^\| 0.1 \| 2 \| 2 \| [0-9.]+ \[[0-9.]+, [0-9.]+\]", text, re.M)
    # reference mode after a 10x cut pulls with c = 2 lambda / 0.1, i.e. 20x paper mode's lambda
    problem = variance.make_problem(n=64, d=4)
    param = torch.zeros(4, requires_grad=True)
    opt = variance._optimizer("trsgd-reference", param, 0.01, 0.9, 0.1, 10, lr_factor=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001) and opt.param_groups[0]["tr_lr0"] == 0.01
    assert problem["X"].shape == (64, 4)


def test_variance_cli_rejects_sweep_without_main_lambda(capsys):
    with pytest.raises(SystemExit) as exit_info:
        variance.main(["--tr_lambdas", "1", "2"])
    assert exit_info.value.code == 2
    assert "must include --tr_lambda 0.1" in capsys.readouterr().err


def test_variance_cli_rejects_underdetermined_problem(capsys):
    with pytest.raises(SystemExit) as exit_info:
        variance.main(["--n", "3", "--d", "5"])
    assert exit_info.value.code == 2
    assert "--n (3) must be at least --d (5)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- GAN compare


def test_gan_compare_plans_paired_runs(tmp_path, capsys):
    from experiments import gan_compare

    out = tmp_path / "gc"
    assert gan_compare.main(["--synthetic", "6", "3", "--size", "64", "--n_epochs", "1", "--n_epochs_decay", "0",
                             "--seeds", "0", "1", "--scorer_seeds", "0", "1", "--out", str(out), "--device", "cpu",
                             "--dry_run"]) == 0
    printed = capsys.readouterr().out
    commands = {line.split("] $ ")[0].lstrip("["): line.split("] $ ")[1]
                for line in printed.splitlines() if "] $ " in line}
    assert list(commands)[:4] == ["synthetic city", "prepare A|B", "train adam seed 0", "test adam seed 0"]
    adam, tradam = commands["train adam seed 0"], commands["train tradam seed 0"]
    slow = commands["train adam@x0.2929 seed 0"]
    # the runs of one seed differ only in the optimizer (and hence the run name) or the lr
    assert adam.replace("adam", "X") == tradam.replace("tradam", "X")
    assert adam.replace("--lr 0.0002", "--lr 5.858e-05").replace("adam_seed0", "adam_at_x0.2929_seed0") == slow
    assert adam.replace("seed0", "seed1").replace("--seed 0", "--seed 1") == commands["train adam seed 1"]
    assert "--direction BtoA" in adam and "--netG unet_64" in adam and "--seed 0" in adam
    # two independently seeded scorers, each scoring the real photos and all 6 runs
    assert "--seed 0" in commands["train scorer_seed0"] and "--seed 1" in commands["train scorer_seed1"]
    assert sum("evaluation.fcn_score" in c for c in commands.values()) == 2 * (1 + 6)
    assert "--real" in commands["FCN-score GT (scorer_seed1)"]
    assert "--copy" in commands["gallery"] and "pix2pix_tr.report.compare" in commands["gallery"]
    assert not out.exists() or not any(out.iterdir())  # a dry run writes nothing


def test_gan_compare_statistics_over_seeds_and_scorers():
    from experiments import gan_compare

    arms = [gan_compare.parse_arm(a, 2e-4) for a in ("adam", "tradam")]
    assert arms[1].label == "TRAdam" and gan_compare.parse_arm("adam@x0.5", 2e-4).lr == pytest.approx(1e-4)
    seeds, scorers = [0, 1, 2], ["s0", "s1"]
    gt = {"per_pixel_acc": 0.7, "per_class_acc": 0.3, "class_iou": 0.2}
    scores = {"GT": {"s0": gt, "s1": {k: v - 0.1 for k, v in gt.items()}}}
    # TRAdam = Adam + 0.01 on every seed; scorer s1 reads 0.05 lower than s0
    for arm, shift in (("Adam", 0.0), ("TRAdam", 0.01)):
        scores[arm] = {s: {str(seed): {k: 0.1 * seed + shift - (0.05 if s == "s1" else 0) for k in gt}
                           for seed in seeds} for s in scorers}
    summary = gan_compare.summarize(scores, arms, seeds, scorers)
    tr = summary["arms"]["TRAdam"]["per_pixel_acc"]
    assert tr["mean"] == pytest.approx(0.1 + 0.01 - 0.025)
    assert tr["diff_to_base"]["mean"] == pytest.approx(0.01) and tr["diff_to_base"]["resolved"]
    assert tr["scorer_spread"] == pytest.approx(0.05) and summary["GT"]["class_iou"]["scorer_spread"] == pytest.approx(0.1)
    table = gan_compare.markdown_table(summary, arms, len(seeds), scorers)
    assert "TRAdam − Adam" in table and "**resolved**" in table and "s0 / s1" in table


@pytest.mark.parametrize("argv, message", [
    (["--synthetic", "4", "2", "--size", "100"], "--size must be a multiple of 16"),
    (["--synthetic", "4", "2", "--size", "96"], "--size 96 has no matching U-Net: give --netG"),
    (["--cityscapes_dir", "/nonexistent/city"], "--cityscapes_dir /nonexistent/city has no leftImg8bit/val"),
    (["--synthetic", "4", "2", "--scorer", "/nonexistent/s.pth"], "--scorer /nonexistent/s.pth does not exist"),
    (["--synthetic", "4", "2", "--arms", "adam", "lion"], "--arms lion: the optimizer must be one of"),
    (["--synthetic", "4", "2", "--arms", "adam@fast"], "--arms adam@fast: after @ give an lr"),
    (["--synthetic", "4", "2", "--seeds", "1", "1"], "--seeds lists a seed twice"),
])
def test_gan_compare_bad_flags(argv, message, capsys):
    from experiments import gan_compare

    with pytest.raises(SystemExit) as exit_info:
        gan_compare.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------- hostile input (issue 21)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_pickle_that_runs_code_is_refused_unrun(tmp_path, capsys):
    """Issue 21 #13: CIFAR batches are read by a restricted unpickler; a crafted one never runs its payload."""
    folder = _write_fake_cifar10(tmp_path)
    marker = tmp_path / "payload_ran"
    batch = _fake_batch(3, 1, b"labels")
    batch[b"batch_label"] = _Payload(marker)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match=r"data_batch_1 is not a CIFAR batch: it asks to run or build \S*system"):
        load_cifar(tmp_path, "cifar10", "train")
    assert small_batch.main(["--dataset", "cifar10", "--data_dir", str(tmp_path), "--epochs", "1", "--seeds", "0",
                             "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data_batch_1" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out" / "results.json").exists()
    batch[b"batch_label"] = b"fake"
    batch[b"data"] = batch[b"data"].astype(np.int64)  # not what CIFAR holds: refused, not silently cast
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match=r"data_batch_1 does not hold CIFAR images"):
        load_cifar(tmp_path, "cifar10", "train")


@pytest.mark.parametrize("flags,named", [(["--max_train", "0"], "--max_train"), (["--tr_lambda", "-1"], "--tr_lambda"),
                                         (["--max_test", "0"], "--max_test"), (["--momentum", "-0.5"], "--momentum"),
                                         (["--device", "cuda:7"], "--device")])
def test_small_batch_refuses_bad_values_before_writing_anything(tmp_path, capsys, flags, named):
    """Issue 21 #12 and 'small_batch --tr_lambda -1 crashes after writing results.json': every value a run could
    refuse is refused first (exit 2, the flag named), so no results.json or table of chance accuracies appears."""
    if named == "--device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        small_batch.main(["--preset", "smoke", "--out", str(out), *flags])
    assert exit_info.value.code == 2 and named in capsys.readouterr().err
    assert not out.exists()
