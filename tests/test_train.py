"""The training application end to end on the tiny synthetic city (ngf = ndf = 8, 64x64 crops, unet_64).

Runs call :func:`pix2pix_tr.training.train` in-process (one torch start-up for the whole file); the CLI
paths go through :func:`pix2pix_tr.training.cli.main` exactly as train.py does.
"""

import json
import math
import os
import signal

import pytest
import torch

from pix2pix_tr.models import count_parameters
from pix2pix_tr.options import parse_train
from pix2pix_tr.training import TrainingDiverged
from pix2pix_tr.training.cli import main
from pix2pix_tr.training.optimizers import make_optimizer, make_scheduler
from conftest import loss_columns, state_equal, tiny_args
from conftest import train_run as run


@pytest.fixture(scope="module")
def reference_run(ab_root, tmp_path_factory):
    """Two uninterrupted epochs with the default optimiser (TRAdam): 8 images, batch 2 -> 4 iterations/epoch."""
    ckpt = tmp_path_factory.mktemp("ckpt_ref")
    result = run(ab_root, ckpt, "ref")
    return ckpt / "ref", result


def test_tiny_run_writes_every_file(reference_run):
    run_dir, result = reference_run
    assert result.status == "finished" and result.total_iters == 8 and result.epoch == 3
    for name in ["latest_net_G.pth", "latest_net_D.pth", "1_net_G.pth", "1_net_D.pth", "2_net_G.pth",
                 "2_net_D.pth", "training_state.pth", "train_opt.txt", "train_opt.json", "loss_log.csv",
                 "loss_curve.png", "web/index.html"]:
        assert (run_dir / name).is_file(), name
    # plain state_dicts that load with weights_only, the final ones equal to the returned networks
    G = torch.load(run_dir / "latest_net_G.pth", weights_only=True)
    assert state_equal(G, result.G.state_dict())
    assert state_equal(torch.load(run_dir / "2_net_D.pth", weights_only=True), result.D.state_dict())
    assert not state_equal(torch.load(run_dir / "1_net_G.pth", weights_only=True), G)
    state = torch.load(run_dir / "training_state.pth", weights_only=True)
    assert (state["epoch"], state["epoch_iter"], state["total_iters"]) == (3, 0, 8)
    assert state["opt_G"]["param_groups"][0]["tr_step"] == 8  # the TR counter travels with the state
    opts = json.loads((run_dir / "train_opt.json").read_text())
    assert opts["netG"] == "unet_64" and opts["optimizer"] == "tradam" and opts["tr_lambda"] == 0.1
    assert opts["max_dataset_size"] == "inf"
    assert "netG: unet_64" in (run_dir / "train_opt.txt").read_text()
    rows = loss_columns(run_dir / "loss_log.csv")
    assert [int(r["total_iters"]) for r in rows] == [2, 4, 6, 8]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("G_GAN", "G_L1", "D_real", "D_fake"))
    # linear policy: lr for epoch 1, lr/2 for epoch 2 (1 - 1/(n_epochs_decay + 1))
    assert float(rows[0]["lr_G"]) == pytest.approx(2e-4) and float(rows[-1]["lr_G"]) == pytest.approx(1e-4)
    html = (run_dir / "web/index.html").read_text()
    assert html.index("epoch002_fake_B.png") < html.index("epoch001_fake_B.png")  # newest first
    for key in ("real_A", "fake_B", "real_B"):
        assert (run_dir / f"web/images/epoch001_{key}.png").is_file()


def test_resume_at_epoch_boundary_equals_uninterrupted(reference_run, ab_root, tmp_path):
    ref_dir, ref = reference_run
    first = run(ab_root, tmp_path, "r", "--max_iters", "4")
    assert first.status == "stopped" and first.epoch == 2 and first.total_iters == 4
    second = run(ab_root, tmp_path, "r", "--continue_train")
    assert second.status == "finished" and second.total_iters == 8
    assert state_equal(second.G.state_dict(), ref.G.state_dict())
    assert state_equal(second.D.state_dict(), ref.D.state_dict())
    assert loss_columns(tmp_path / "r/loss_log.csv") == loss_columns(ref_dir / "loss_log.csv")
    html = (tmp_path / "r/web/index.html").read_text()
    assert "epoch001_fake_B.png" in html and "epoch002_fake_B.png" in html  # the gallery kept epoch 1


def test_cached_images_and_device_augment_train_bit_identically(reference_run, ab_root, tmp_path, capsys):
    ref_dir, ref = reference_run
    result = run(ab_root, tmp_path, "dev", "--cache_images", "--augment_on_device")
    assert result.status == "finished" and result.total_iters == 8
    assert "--cache_images: 8 pairs decoded and resized once" in capsys.readouterr().out
    assert state_equal(result.G.state_dict(), ref.G.state_dict())
    assert state_equal(result.D.state_dict(), ref.D.state_dict())
    assert loss_columns(tmp_path / "dev/loss_log.csv") == loss_columns(ref_dir / "loss_log.csv")


def test_sigterm_mid_epoch_saves_and_resumes_exactly(reference_run, ab_root, tmp_path):
    _, ref = reference_run

    def terminate_at_3(total_iters):
        if total_iters == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    first = run(ab_root, tmp_path, "s", after_iteration=terminate_at_3)
    assert first.status == "interrupted" and first.total_iters == 3
    state = torch.load(tmp_path / "s/training_state.pth", weights_only=True)
    assert (state["epoch"], state["epoch_iter"]) == (1, 3)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    second = run(ab_root, tmp_path, "s", "--continue_train")
    assert second.total_iters == 8
    assert state_equal(second.G.state_dict(), ref.G.state_dict())
    assert state_equal(second.D.state_dict(), ref.D.state_dict())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(ab_root, tmp_path, monkeypatch):
    import pix2pix_tr.models.pix2pix as step_module

    calls = {"n": 0}
    real_l1 = step_module.F.l1_loss

    def l1_that_fails_on_third(*args, **kwargs):
        calls["n"] += 1
        value = real_l1(*args, **kwargs)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(step_module.F, "l1_loss", l1_that_fails_on_third)
    with pytest.raises(TrainingDiverged, match=r"G_L1 loss became nan at epoch 1, iteration 3 .*saved after 2 "
                                               r"iterations"):
        run(ab_root, tmp_path, "n", "--save_latest_freq", "2")
    state = torch.load(tmp_path / "n/training_state.pth", weights_only=True)
    assert state["total_iters"] == 2
    G = torch.load(tmp_path / "n/latest_net_G.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in G.values() if v.is_floating_point())
    assert state_equal(G, state["G"])


@pytest.mark.parametrize("extra", [("--optimizer", "adam"), ("--optimizer", "sgd", "--lr", "0.01"),
                                   ("--optimizer", "trsgd", "--tr_mode", "reference"),
                                   ("--amp", "bf16", "--channels_last", "--gan_mode", "lsgan"),
                                   ("--amp", "fp16", "--gan_mode", "wgangp", "--norm", "instance"),
                                   ("--netD", "pixel", "--lr_policy", "cosine", "--no_dropout"),
                                   ("--netG", "resnet_6blocks", "--lr_policy", "plateau")])
@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")  # fp16: the scaler skips step 1
def test_every_optimizer_and_option_runs(ab_root, tmp_path, extra):
    result = run(ab_root, tmp_path, "o", "--max_dataset_size", "2", "--n_epochs_decay", "0", *extra)
    assert result.status == "finished" and result.total_iters == 1
    kind = extra[1] if extra[0] == "--optimizer" else "tradam"
    state = torch.load(tmp_path / "o/training_state.pth", weights_only=True)
    assert state["options"]["optimizer"] == kind
    assert all(torch.isfinite(p).all() for p in result.G.parameters())
    start = torch.load(tmp_path / "o/1_net_G.pth", weights_only=True)
    assert len(start) == len(result.G.state_dict())


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")
def test_schedules():
    p = [torch.nn.Parameter(torch.zeros(1))]
    lrs = []
    sched = make_scheduler(make_optimizer("adam", p, lr=1.0), "linear", n_epochs=2, n_epochs_decay=3)
    for _ in range(5):
        lrs.append(sched.optimizer.param_groups[0]["lr"])
        sched.step()
    assert lrs == pytest.approx([1, 1, 0.75, 0.5, 0.25])
    sched = make_scheduler(make_optimizer("tradam", p, lr=1.0), "step", n_epochs=1, n_epochs_decay=0,
                           lr_decay_iters=2)
    for _ in range(2):
        sched.step()
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    opt = make_optimizer("trsgd", p, lr=0.5, beta1=0.9)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["tr_period"] == 10


def test_cli_end_to_end_and_refusals(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "cli", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "--ngf 8" in out and "--lr " not in out  # only what differs from the defaults
    # a forgotten --continue_train must not overwrite the run
    assert main(args) == 2
    assert "already holds a training run: add --continue_train" in capsys.readouterr().err
    # resuming a finished run says so
    assert main(args + ["--continue_train"]) == 0
    assert "already finished" in capsys.readouterr().out
    # resuming with other networks is refused, naming the flag
    bad = tiny_args(ab_root, tmp_path, "cli", "--max_dataset_size", "2", "--n_epochs_decay", "0", "--ngf", "16",
                    "--continue_train")
    assert main(bad) == 2
    assert "--ngf is 16 but the run" in capsys.readouterr().err
    # so are optimiser settings the saved param groups would silently override
    for flag, value in (("--tr_lambda", "0.5"), ("--tr_period", "3"), ("--lr", "0.001")):
        assert main(args + ["--continue_train", flag, value]) == 2
        assert f"{flag} is {float(value) if flag != '--tr_period' else int(value)!r} but the run" \
            in capsys.readouterr().err
    # a run saved without --amp fp16 resumes with it (its scalers start fresh)
    assert main(args + ["--continue_train", "--amp", "fp16"]) == 0
    assert "already finished" in capsys.readouterr().out
    # nothing to resume
    assert main(tiny_args(ab_root, tmp_path, "fresh", "--continue_train")) == 2
    assert "does not exist, so there is nothing to resume" in capsys.readouterr().err


def test_bad_data_gives_one_sentence(ab_root, tmp_path, capsys):
    assert main(tiny_args(tmp_path / "nowhere", tmp_path, "x")) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # a typo leaves no half-made run folder behind
    assert main(tiny_args(ab_root, tmp_path, "y", "--phase", "test")) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--crop_size", "64"], "--netG unet_256 needs square inputs whose side is a multiple of 256"),
    (["--netG", "unet_64", "--crop_size", "300", "--load_size", "286"], "--crop_size 300 is larger than --load_size"),
    (["--optimizer", "lamb"], "invalid choice: 'lamb'"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--device", "cuda:abc"], "--device 'cuda:abc' is not a device"),
    (["--lr", "-1"], "--lr: must be a positive number"),
    (["--n_epochs", "0", "--n_epochs_decay", "0"], "nothing to train"),
    (["--name", "a/b"], "must be a plain folder name"),
])
def test_bad_flags_exit_2_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_train(["--dataroot", "x", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_request_without_cuda_is_refused(ab_root, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    assert main(tiny_args(ab_root, tmp_path, "c") + ["--device", "cuda"]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err


def test_default_networks_have_the_original_sizes():
    from pix2pix_tr.training.loop import build_networks

    G, D = build_networks(parse_train(["--dataroot", "x"]))
    assert (count_parameters(G), count_parameters(D)) == (54_413_955, 2_768_705)


def test_file_that_breaks_during_training_stops_with_its_name(ab_root, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    files = sorted((ab_root / "train").iterdir())[:2]
    for f in files:
        shutil.copy(f, data / "train" / f.name)
    broken = data / "train" / files[1].name
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # header intact, pixels cut
    args = tiny_args(data, tmp_path, "b", "--batch_size", "1", "--no_flip", "--n_epochs_decay", "0")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert broken.name in err and "Traceback" not in err
    # the advice matches the situation (nothing was saved: no --continue_train) and works as written
    assert "nothing had been saved yet; fix the file and run the same command again" in err
    assert "--continue_train" not in err
    shutil.copy(files[1], broken)
    assert main(args) == 0


def test_a_run_stopped_on_the_last_iteration_of_an_epoch_still_shows_that_epoch(ab_root, tmp_path):
    import json

    result = run(ab_root, tmp_path, "edge", "--max_dataset_size", "2", "--max_iters", "1")  # batch 2: 1 it/epoch
    assert result.total_iters == 1
    entries = json.loads((tmp_path / "edge" / "web" / "gallery.json").read_text())
    entries = entries["entries"] if isinstance(entries, dict) else entries
    assert entries and all(entry["images"] for entry in entries)


def test_tr_restart_each_epoch_starts_a_cycle_at_every_epoch(ab_root, tmp_path):
    """4 iterations per epoch with S = 3: the release's schedule restarts at 4 (-> 6), ours counts on (8)."""
    def final_counter(name, *extra):
        run(ab_root, tmp_path, name, "--tr_period", "3", *extra)
        state = torch.load(tmp_path / name / "training_state.pth", weights_only=True)
        return {state[k]["param_groups"][0]["tr_step"] for k in ("opt_G", "opt_D")}

    assert final_counter("global") == {8}
    assert final_counter("restart", "--tr_restart_each_epoch") == {10}
    with pytest.raises(Exception, match="--tr_restart_each_epoch"):  # resume must keep the schedule
        run(ab_root, tmp_path, "restart", "--tr_period", "3", "--continue_train", "--n_epochs", "2")


def test_resuming_a_run_already_at_max_iters_trains_nothing(ab_root, tmp_path, capsys):
    first = run(ab_root, tmp_path, "m", "--max_iters", "3")
    assert first.status == "stopped" and first.total_iters == 3
    files = {p.name: p.read_bytes() for p in (tmp_path / "m").glob("*.pth")}
    log = (tmp_path / "m/loss_log.csv").read_text()
    capsys.readouterr()
    again = run(ab_root, tmp_path, "m", "--max_iters", "3", "--continue_train")
    assert again.status == "stopped" and again.total_iters == 3  # the limit is checked before a step
    assert "is already at --max_iters 3" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").glob("*.pth")} == files  # nothing trained or saved
    assert (tmp_path / "m/loss_log.csv").read_text() == log
    assert state_equal(again.G.state_dict(), first.G.state_dict())


#: The keys of training_state.pth as the release before the TrainState refactor wrote them (its
#: ``current_position_state`` plus ``format``): the file format, which older runs on disk have.
PREVIOUS_RELEASE_STATE_KEYS = ("epoch", "epoch_iter", "total_iters", "G", "D", "opt_G", "opt_D", "sched_G",
                               "sched_D", "scaler_G", "scaler_D", "meter", "rng", "options", "world_size",
                               "batch_size", "data", "overrides", "format")


def test_a_state_written_by_the_previous_release_resumes_exactly(reference_run, ab_root, tmp_path):
    _, ref = reference_run
    run(ab_root, tmp_path, "old", "--max_iters", "3")
    path = tmp_path / "old/training_state.pth"
    state = torch.load(path, weights_only=True)
    assert tuple(state) == PREVIOUS_RELEASE_STATE_KEYS  # same names, same order
    assert set(state["meter"]) == {"window", "window_n", "epoch_G", "epoch_n"}
    assert isinstance(state["meter"]["epoch_G"], float) and set(state["rng"]) == {"torch"}
    # rewrite it key by key as the previous release's code built it, then resume
    torch.save({key: state[key] for key in PREVIOUS_RELEASE_STATE_KEYS}, path)
    resumed = run(ab_root, tmp_path, "old", "--continue_train")
    assert resumed.total_iters == 8
    assert state_equal(resumed.G.state_dict(), ref.G.state_dict())
    assert state_equal(resumed.D.state_dict(), ref.D.state_dict())


def test_the_option_layer_imports_nothing_of_training_and_training_nothing_of_inference():
    """Dependencies point one way: options.py is shared by every entry point, so it must not pull in the loop;
    train.py matches pretrained weights through pix2pix_tr.models.checkpoint, not test.py's package."""
    import subprocess
    import sys

    code = ("import sys, pix2pix_tr.options; "
            "a = sorted(m for m in sys.modules if m.startswith('pix2pix_tr.training')); "
            "import pix2pix_tr.training.cli, pix2pix_tr.training.loop; "
            "b = sorted(m for m in sys.modules if m.startswith('pix2pix_tr.inference')); print(a, b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.strip()
    assert out == "[] []"


def test_training_checks_its_own_options_with_the_flag_named(capsys):
    from pix2pix_tr.training import TrainConfig, TrainingError
    from pix2pix_tr.training.cli import parse

    opt = parse_train(["--dataroot", "x", "--override", "lr"])  # the option layer does not judge --override
    with pytest.raises(TrainingError, match="--override only applies with --continue_train"):
        TrainConfig.from_options(opt)
    with pytest.raises(SystemExit) as info:  # train.py: argparse's usage line and exit status 2
        parse(["--dataroot", "x", "--continue_train", "--override", "ngf"])
    assert info.value.code == 2 and "--override ngf is not an option that can change on resume" in \
        capsys.readouterr().err
    cfg = parse(["--dataroot", "x", "--continue_train", "--override", "lr", "lr"])
    assert cfg.override == ("lr",) and cfg.options["override"] == ["lr"] and cfg.run_dir.name == "experiment_name"


def test_a_nan_between_log_rows_is_caught_before_the_next_save(ab_root, tmp_path, monkeypatch):
    """The losses are checked every --print_freq iterations *and before every save*: a NaN in iteration 2 with
    --print_freq 4 is found by the save of iteration 3 (--save_latest_freq 3), which then writes nothing."""
    import pix2pix_tr.models.pix2pix as step_module

    calls = {"n": 0}
    real_l1 = step_module.F.l1_loss

    def l1_that_fails_on_second(*args, **kwargs):
        calls["n"] += 1
        value = real_l1(*args, **kwargs)
        return value * float("nan") if calls["n"] == 2 else value

    monkeypatch.setattr(step_module.F, "l1_loss", l1_that_fails_on_second)
    with pytest.raises(TrainingDiverged, match=r"the G_L1 loss became nan at epoch 1, iteration 2 of the epoch \(2 in "
                                               r"total; found by the check after iteration 3: .*no checkpoint had been "
                                               r"saved yet: run the same command again with a lower learning rate"):
        run(ab_root, tmp_path, "n", "--print_freq", "4", "--save_latest_freq", "3")
    assert calls["n"] == 3  # it trained on (in memory) until the check
    assert not (tmp_path / "n/training_state.pth").exists() and not (tmp_path / "n/latest_net_G.pth").exists()


def test_adam_and_sgd_baselines_run_the_kernels_tradam_and_trsgd_run():
    """--optimizer adam/sgd take torch's fused kernels wherever TRAdam/TRSGD do (here, on the CPU, which has
    them): without it, torch's default is the for-loop on a CPU, and a comparison would measure kernels too."""
    from pix2pix_tr.training.optimizers import fused_like_tr

    params = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2, 3))]
    for plain, tr in (("adam", "tradam"), ("sgd", "trsgd")):
        base, ours = make_optimizer(plain, params, lr=0.1), make_optimizer(tr, params, lr=0.1)
        assert base.param_groups[0]["fused"] is True and ours.param_groups[0]["fused"] is True
        assert not base.param_groups[0]["foreach"]
    # where TRAdam would not take the fused kernel, neither does the baseline: torch's default decides
    assert fused_like_tr([torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))]) is None
    assert make_optimizer("adam", params, lr=0.1, fused=True).param_groups[0]["fused"] is True  # --fused


# ---------------------------------------------------------------------------------------------------- resume rules
def test_every_train_option_has_a_resume_rule():
    """pix2pix_tr/training/resume.py's table covers every option of the parser, so a new option must be classed."""
    from pix2pix_tr.options import _Refused, train_parser
    from pix2pix_tr.training.resume import RESUME_RULES

    # (the official flags that are refused never parse, so they have no value to compare)
    dests = {a.dest for a in train_parser()._actions if a.dest != "help" and not isinstance(a, _Refused)}
    assert dests == set(RESUME_RULES)
    assert {kind for kind, _ in RESUME_RULES.values()} == {"fixed", "override", "data", "schedule", "free"}


def _epoch_lrs(run_dir):
    """{epoch: lr_G} from the loss log (one row per iteration with --print_freq 1)."""
    rows = loss_columns(run_dir / "loss_log.csv")
    return {int(r["epoch"]): r["lr_G"] for r in rows}


@pytest.mark.parametrize("case", [
    # (lr_policy and other options of every run, the first run's schedule, the extended schedule)
    ((), ("--n_epochs", "1", "--n_epochs_decay", "1"), ("--n_epochs", "2", "--n_epochs_decay", "1")),
    ((), ("--n_epochs", "1", "--n_epochs_decay", "1"), ("--n_epochs", "1", "--n_epochs_decay", "3")),
    (("--lr_policy", "step", "--lr_decay_iters", "1"), ("--n_epochs", "2", "--n_epochs_decay", "0"),
     ("--n_epochs", "4", "--n_epochs_decay", "0")),
    (("--lr_policy", "cosine"), ("--n_epochs", "1", "--n_epochs_decay", "1"), ("--n_epochs", "2", "--n_epochs_decay",
                                                                              "2")),
    (("--lr_policy", "plateau"), ("--n_epochs", "1", "--n_epochs_decay", "1"), ("--n_epochs", "3", "--n_epochs_decay",
                                                                               "1")),
    (("--tr_mode", "reference"), ("--n_epochs", "1", "--n_epochs_decay", "1"), ("--n_epochs", "2", "--n_epochs_decay",
                                                                               "2")),
], ids=["linear-n_epochs", "linear-n_epochs_decay", "step", "cosine", "plateau", "tr_mode-reference"])
def test_extending_a_finished_run_follows_the_schedule_of_the_options_now_in_force(ab_root, tmp_path, case):
    """Issue 21 #2: the resumed epochs train at the lr a run started with the final options trains them at."""
    common, first, extended = case
    args = ("--max_dataset_size", "2", "--print_freq", "1", *common)  # batch 2: one iteration per epoch
    scratch = run(ab_root, tmp_path, "scratch", *args, *extended)
    done = run(ab_root, tmp_path, "ext", *args, *first)
    assert done.status == "finished"
    more = run(ab_root, tmp_path, "ext", *args, *extended, "--continue_train")
    assert more.status == "finished" and more.epoch == scratch.epoch
    want, got = _epoch_lrs(tmp_path / "scratch"), _epoch_lrs(tmp_path / "ext")
    new_epochs = range(done.epoch, scratch.epoch)
    assert [got[e] for e in new_epochs] == [want[e] for e in new_epochs]
    assert all(float(got[e]) > 0 for e in new_epochs)
    last_before = torch.load(tmp_path / "ext" / f"{done.epoch - 1}_net_G.pth", weights_only=True)
    assert not state_equal(last_before, more.G.state_dict())  # the new epochs trained


def test_a_resumed_schedule_equals_the_uninterrupted_one_mid_epoch(ab_root, tmp_path):
    """Stopped in epoch 2 of 4 and resumed with the same options: every epoch's lr (and the weights) equal the
    uninterrupted run's, so rebuilding the schedule from the options changes nothing when nothing changed."""
    args = ("--n_epochs", "2", "--n_epochs_decay", "2", "--print_freq", "1")
    whole = run(ab_root, tmp_path, "whole", *args)
    run(ab_root, tmp_path, "parts", *args, "--max_iters", "6")
    parts = run(ab_root, tmp_path, "parts", *args, "--continue_train")
    assert _epoch_lrs(tmp_path / "parts") == _epoch_lrs(tmp_path / "whole")
    assert state_equal(parts.G.state_dict(), whole.G.state_dict())


def test_resume_refuses_options_that_change_the_meaning_unless_overridden(ab_root, tmp_path, capsys):
    """Issue 21 #1: each class of resume_rules: fixed (refused, not overridable), override (refused unless named,
    then recorded), schedule and free (follow the command line). A refused resume leaves train_opt.* as it was."""
    args = tiny_args(ab_root, tmp_path, "m", "--max_dataset_size", "2", "--max_iters", "1", "--direction", "BtoA")
    assert main(args) == 0
    run_dir = tmp_path / "m"
    saved = {name: (run_dir / name).read_bytes() for name in ("train_opt.json", "train_opt.txt")}
    capsys.readouterr()
    again = [a for a in args if a not in ("--direction", "BtoA")] + ["--continue_train", "--max_iters", "2"]
    for extra, flag in ((["--direction", "AtoB"], "--direction"), (["--crop_size", "32", "--netG", "resnet_6blocks"],
                                                                   "--netG"),
                        (["--no_dropout"], "--no_dropout"), (["--init_type", "xavier"], "--init_type"),
                        (["--gan_mode", "lsgan"], "--gan_mode"), (["--preprocess", "scale_width_and_crop"],
                                                                  "--preprocess")):
        assert main(again + ["--direction", "BtoA"] + extra if flag != "--direction" else again + extra) == 2, flag
        err = capsys.readouterr().err
        assert f"{flag} is " in err and "but the run in" in err and "Traceback" not in err, err
        assert {name: (run_dir / name).read_bytes() for name in saved} == saved  # nothing rewritten
    # an option of the override class names the override; a fixed one says it cannot change
    assert main(again + ["--direction", "AtoB"]) == 2
    assert "or add --override direction to change it on purpose" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(again + ["--direction", "BtoA", "--override", "ngf"])
    assert "--override ngf is not an option that can change on resume (the saved weights have this width" in \
        capsys.readouterr().err
    # the override is applied and recorded: train_opt.json, the loss log's note, the state
    assert main(again + ["--direction", "AtoB", "--override", "direction"]) == 0
    opts = json.loads((run_dir / "train_opt.json").read_text())
    assert opts["direction"] == "AtoB" and opts["override"] == ["direction"]
    notes = [r["note"] for r in loss_columns(run_dir / "loss_log.csv") if r["note"]]
    assert notes == ["override direction BtoA -> AtoB"]
    state = torch.load(run_dir / "training_state.pth", weights_only=True)
    assert state["overrides"] == [{"total_iters": 1, "note": "override direction BtoA -> AtoB"}]
    # schedule and free options follow the command line, and are recorded as now
    assert main(again + ["--direction", "AtoB", "--max_iters", "3", "--n_epochs", "3", "--print_freq", "5",
                         "--num_threads", "1"]) == 0
    opts = json.loads((run_dir / "train_opt.json").read_text())
    assert (opts["n_epochs"], opts["print_freq"], opts["num_threads"]) == (3, 5, 1)


def test_the_resume_table_of_the_docs_is_the_code_table():
    """docs/training.md's table of resume classes lists exactly the options of each class of RESUME_RULES."""
    import re
    from pathlib import Path

    from pix2pix_tr.training.resume import RESUME_RULES

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    documented = {}
    for kind in ("fixed", "override", "data", "schedule", "free"):
        row = re.search(rf"^\s*\| {kind} \| (.*?) \|", text, re.M)
        assert row, kind
        documented[kind] = set(re.findall(r"`--(\w+)`", row.group(1)))
    assert documented == {kind: {k for k, (c, _) in RESUME_RULES.items() if c == kind} for kind in documented}
