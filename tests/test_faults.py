"""Fault injection and hostile input (issue 12): nothing the user had is lost, nothing goes wrong silently.

Each test reproduces one finding of the probe run and checks the fix, and each message's advice is followed
as written to check that it works. docs/reliability.md lists the promises and which test covers each.
The slow ones: SIGKILL at random moments of the checkpoint saves (>= 10 kills, in child processes), and a
real full disk (a size-limited tmpfs; skipped with the reason when the machine does not allow mounting).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from pix2pix_tr.data import AlignedDataset
from pix2pix_tr.data.cli import combine_main, prepare_main, run_cli
from pix2pix_tr.inference import main as inference_main
from pix2pix_tr.io import atomic_torch_save
from pix2pix_tr.training.cli import main as train_main
from pix2pix_tr.training.errors import NoSpaceLeft
from pix2pix_tr.training.lock import RunLock
from conftest import loss_columns, make_run, state_equal, tiny_args
from conftest import train_run as run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(ab_root, tmp_path_factory):
    """The uninterrupted tiny run of test_train (TRAdam, 2 epochs of 4 iterations) to compare resumes with."""
    ckpt = tmp_path_factory.mktemp("faults_ref")
    return ckpt / "ref", run(ab_root, ckpt, "ref")


def advice_flags(message: str, pattern: str) -> list[str]:
    """The flags a message tells the user to add (the text between the backticks of ``pattern``)."""
    found = re.search(pattern, message)
    assert found, message
    return shlex.split(found.group(1))


class Killed(BaseException):
    """Stands for a SIGKILL in-process: nothing after it runs (BaseException: no handler of ours catches it)."""


# ---------------------------------------------------------------------------------------------------- 1. commit order
def test_kill_between_epoch_files_and_state_redoes_the_epoch_end(reference, ab_root, tmp_path, monkeypatch):
    ref_dir, ref = reference
    import pix2pix_tr.io as io_module

    real_replace = os.replace

    def replace_then_die(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "1_net_G.pth":  # epoch 1's G is written, its D, gallery row and the state are not
            raise Killed

    monkeypatch.setattr(io_module.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        run(ab_root, tmp_path, "k", "--save_latest_freq", "2")
    monkeypatch.setattr(io_module.os, "replace", real_replace)
    assert not (tmp_path / "k/1_net_D.pth").exists()
    resumed = run(ab_root, tmp_path, "k", "--continue_train")
    assert resumed.status == "finished"
    for name in ("1_net_G.pth", "1_net_D.pth", "2_net_G.pth", "2_net_D.pth"):
        assert state_equal(torch.load(tmp_path / "k" / name, weights_only=True),
                           torch.load(ref_dir / name, weights_only=True)), name
    html = (tmp_path / "k/web/index.html").read_text()
    assert "epoch001_fake_B.png" in html and "epoch002_fake_B.png" in html
    assert loss_columns(tmp_path / "k/loss_log.csv") == loss_columns(ref_dir / "loss_log.csv")


# ---------------------------------------------------------------------------------------------------- 2. one writer
def test_a_second_writer_is_refused_naming_the_first(ab_root, tmp_path, capsys):
    run_dir = tmp_path / "busy"
    with RunLock(run_dir):
        assert train_main(tiny_args(ab_root, tmp_path, "busy")) == 2
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "--name" in err and "Traceback" not in err
    assert not (run_dir / "training_state.pth").exists()


def test_a_lock_left_by_a_killed_process_is_not_stale(ab_root, tmp_path):
    run_dir = tmp_path / "crashed"
    code = f"import time; from pix2pix_tr.training.lock import RunLock; RunLock({str(run_dir)!r}).acquire(); " \
           f"print('locked', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match=f"pid {holder.pid} on"):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait()
    result = run(ab_root, tmp_path, "crashed", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    assert result.status == "finished"


def test_cleanup_of_a_failed_run_never_hides_its_error(ab_root, tmp_path, monkeypatch):
    """A run that fails its checks removes the folder it created; when a second process takes the folder in
    between (here: its lock file appears before the rmdir), the rmdir fails and the first error must still be
    the one reported."""
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import TrainingError, train

    real_rmdir = Path.rmdir
    racer = []

    def rmdir_after_a_second_process_locked(path):
        racer.append(RunLock(path).acquire())  # the second process creates and locks a new .lock
        return real_rmdir(path)

    monkeypatch.setattr(Path, "rmdir", rmdir_after_a_second_process_locked)
    with pytest.raises(TrainingError, match="does not exist"):  # not OSError(ENOTEMPTY) from the cleanup
        train(parse_train(tiny_args(tmp_path / "nowhere", tmp_path, "race")))
    assert racer, "the cleanup did not run"
    # the second process holds a real lock on the file at the path: a third one is refused
    with pytest.raises(Exception, match="is being written by another training process"):
        RunLock(tmp_path / "race").acquire()
    racer[0].release()


def test_a_lock_taken_on_a_file_its_holder_deleted_is_dropped_and_retaken(tmp_path, monkeypatch):
    """Between our open() and flock() the previous holder removes the lock file (a failed run cleaning up): the
    lock we then get guards nothing, so acquire() must start over on the file now at the path."""
    import pix2pix_tr.training.lock as lock_module

    run_dir = tmp_path / "r"
    real_flock = lock_module.fcntl.flock
    calls = {"n": 0}

    def flock_after_the_file_was_removed(fd, op):
        calls["n"] += 1
        if calls["n"] == 1:
            (run_dir / ".lock").unlink()
        return real_flock(fd, op)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_the_file_was_removed)
    lock = RunLock(run_dir).acquire()
    try:
        assert calls["n"] == 2
        assert os.path.samestat(os.fstat(lock._fd), os.stat(run_dir / ".lock"))
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------------- 3-4. divergence
def test_huge_lr_is_stopped_and_the_advised_command_works(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "huge", "--lr", "1e10")
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert "NaN" in err and "Traceback" not in err
    assert not (tmp_path / "huge/training_state.pth").exists() and not (tmp_path / "huge/latest_net_G.pth").exists()
    flags = advice_flags(err, r"run the same command again with a lower learning rate, e\.g\. (--lr \S+) \(")
    assert flags == ["--lr", "1e+09"]
    # the advice, followed with a sane value of the same form, works (1e+09 itself would diverge again)
    assert train_main(tiny_args(ab_root, tmp_path, "huge", "--lr", "2e-04", "--max_dataset_size", "2")) == 0


def test_weights_that_blow_up_with_finite_losses_stop_the_run_and_resume_with_override(ab_root, tmp_path, capsys,
                                                                                       monkeypatch):
    import pix2pix_tr.training.loop as loop_module

    real_step = loop_module.train_step
    calls = {"n": 0}

    def step_then_poison(G, *args, **kwargs):
        out = real_step(G, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the losses stay finite; a BatchNorm buffer of G runs off to inf
            bn = next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var.fill_(float("inf"))
        return out

    monkeypatch.setattr(loop_module, "train_step", step_then_poison)
    args = tiny_args(ab_root, tmp_path, "blow", "--save_latest_freq", "2")
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert "NaN" in err and "G.model" in err and "running_var" in err
    assert "epoch 1" in err and "iteration 4" in err
    state = torch.load(tmp_path / "blow/training_state.pth", weights_only=True)
    assert state["total_iters"] == 2  # the last good save; nothing non-finite reached the disk
    for name in ("latest_net_G.pth", "latest_net_D.pth"):
        assert all(torch.isfinite(v).all() for v in torch.load(tmp_path / "blow" / name, weights_only=True).values())
    monkeypatch.setattr(loop_module, "train_step", real_step)
    # the message's advice, as written
    flags = advice_flags(err, r"resume it with a lower learning rate by adding (--continue_train --override lr "
                              r"--lr \S+) to the same command")
    assert flags[-1] == "2e-05"
    assert train_main(args + flags) == 0
    opts = json.loads((tmp_path / "blow/train_opt.json").read_text())
    assert opts["lr"] == 2e-5 and opts["override"] == ["lr"]
    rows = loss_columns(tmp_path / "blow/loss_log.csv")
    noted = [r for r in rows if r["note"]]
    assert len(noted) == 1 and noted[0]["note"] == "override lr 0.0002 -> 2e-05" and noted[0]["total_iters"] == "4"
    assert float(rows[-1]["lr_G"]) == pytest.approx(1e-5)  # the schedule continued at the new scale (epoch 2: /2)
    final = torch.load(tmp_path / "blow/training_state.pth", weights_only=True)
    assert final["overrides"] == [{"total_iters": 2, "note": "override lr 0.0002 -> 2e-05"}]
    assert final["opt_G"]["param_groups"][0]["initial_lr"] == pytest.approx(2e-5)


def test_resume_with_another_lr_names_the_override_and_refuses_unknown_ones(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "lr", "--max_dataset_size", "2", "--max_iters", "1")
    assert train_main(args) == 0
    capsys.readouterr()
    assert train_main(args + ["--continue_train", "--lr", "1e-4"]) == 2
    err = capsys.readouterr().err
    assert "--override lr" in err
    assert train_main(args + ["--continue_train", "--lr", "1e-4", "--override", "lr"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train_main(args + ["--continue_train", "--override", "ngf"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--override ngf is not an option that can change on resume (the saved weights have this width" in err
    assert "allowed: " in err and "lr, " in err and "dataroot" in err
    with pytest.raises(SystemExit):
        train_main(args + ["--override", "lr"])
    assert "--override" in (err := capsys.readouterr().err) and "--continue_train" in err


def test_test_py_refuses_a_checkpoint_with_non_finite_values(tmp_path, ab_root, capsys):
    net = make_run(tmp_path / "checkpoints", "bad")
    state = net.state_dict()
    key = next(k for k in state if k.endswith("running_var"))
    state[key] = torch.full_like(state[key], float("inf"))
    atomic_torch_save(state, tmp_path / "checkpoints/bad/latest_net_G.pth")
    assert inference_main(["--dataroot", str(ab_root), "--name", "bad", "--checkpoints_dir", str(tmp_path / "checkpoints"),
                      "--results_dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert key in err and "NaN" in err and "--epoch" in err
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------------- 5. disk full
def test_disk_full_is_one_sentence_with_its_own_exit_code(ab_root, tmp_path, capsys, monkeypatch):
    import errno

    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        if str(getattr(f, "name", "")).startswith(str(tmp_path / "full" / ".training_state.pth")):
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    args = tiny_args(ab_root, tmp_path, "full", "--max_dataset_size", "2")
    assert train_main(args) == 3
    err = capsys.readouterr().err
    assert f"no space left on {tmp_path / 'full'}" in err and re.search(r"\d+ MB", err), err
    assert "Traceback" not in err and not list((tmp_path / "full").glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert train_main(args) == 0  # the advice: free space (here: the fault is gone) and run the same command


def test_disk_full_in_test_py_and_the_data_scripts_exits_3(tmp_path, ab_root, capsys, monkeypatch):
    import errno

    import pix2pix_tr.io as io_module

    make_run(tmp_path / "checkpoints", "ok")
    fold_A, fold_B = _ab_folders(tmp_path, ab_root)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module.os, "fsync", full)
    assert inference_main(["--dataroot", str(ab_root), "--name", "ok", "--checkpoints_dir",
                           str(tmp_path / "checkpoints"), "--results_dir", str(tmp_path / "results")]) == 3
    err = capsys.readouterr().err
    assert "test.py: error: no space left on" in err and "results.json" in err and re.search(r"[\d.]+ MB", err), err
    assert run_cli(combine_main, ["--fold_A", str(fold_A), "--fold_B", str(fold_B), "--fold_AB",
                                  str(tmp_path / "AB")]) == 3
    err = capsys.readouterr().err
    assert "error: no space left on" in err and "Traceback" not in err
    assert not list((tmp_path / "AB").rglob("*.png"))


# ---------------------------------------------------------------------------------------------------- 6. names
def test_test_py_name_cannot_leave_its_folders(tmp_path, ab_root, capsys):
    make_run(tmp_path / "checkpoints", "ok")
    base = ["--dataroot", str(ab_root), "--checkpoints_dir", str(tmp_path / "checkpoints"),
            "--results_dir", str(tmp_path / "results")]
    assert inference_main(base + ["--name", "../../x"]) == 2
    assert "--name '../../x'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # a run folder the user made a link (to a bigger disk) is followed
    shutil.move(tmp_path / "checkpoints" / "ok", tmp_path / "bigdisk")
    (tmp_path / "checkpoints" / "ok").symlink_to(tmp_path / "bigdisk")
    assert inference_main(base + ["--name", "ok", "--num_test", "1"]) == 0
    assert (tmp_path / "results/ok/val_latest/index.html").is_file()


def test_outputs_never_inside_inputs(tmp_path, ab_root, capsys):
    make_run(tmp_path / "checkpoints", "ok")
    data = tmp_path / "data"
    shutil.copytree(ab_root, data)
    before = sorted(p.name for p in (data / "val").iterdir())
    assert inference_main(["--dataroot", str(data), "--name", "ok", "--checkpoints_dir", str(tmp_path / "checkpoints"),
                      "--results_dir", str(data / "val")]) == 2
    assert "--results_dir" in (err := capsys.readouterr().err) and str(data / "val") in err
    assert sorted(p.name for p in (data / "val").iterdir()) == before
    # train.py: a run folder inside the training images would feed the gallery back as training data
    assert train_main(tiny_args(data, data, "train")) == 2
    assert "--checkpoints_dir/--name" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- 8. data tools
def _ab_folders(tmp_path, ab_root, n=3):
    a, b = tmp_path / "A" / "train", tmp_path / "B" / "train"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    for f in sorted((ab_root / "train").iterdir())[:n]:
        shutil.copy(f, a / f.name)
        shutil.copy(f, b / f.name)
    return tmp_path / "A", tmp_path / "B"


@pytest.mark.parametrize("where", ["same", "inside"])
def test_combine_output_overlapping_a_source_is_refused(tmp_path, ab_root, capsys, where):
    fold_A, fold_B = _ab_folders(tmp_path, ab_root)
    before = {p: p.read_bytes() for p in fold_A.rglob("*.png")}
    out = fold_A if where == "same" else fold_A / "train"
    assert run_cli(combine_main, ["--fold_A", str(fold_A), "--fold_B", str(fold_B), "--fold_AB", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--fold_AB {out}" in err and f"--fold_A {fold_A}" in err
    assert {p: p.read_bytes() for p in fold_A.rglob("*.png")} == before
    # pix2pix's own layout, the output folder above the sources, stays allowed
    assert run_cli(combine_main, ["--fold_A", str(fold_A), "--fold_B", str(fold_B), "--fold_AB", str(tmp_path)]) == 0
    assert len(list((tmp_path / "train").glob("*.png"))) == 3


def test_compare_output_inside_a_run_folder_is_refused(tmp_path, ab_root):
    from pix2pix_tr.report.compare import CompareError, compare_runs

    make_run(tmp_path / "checkpoints", "ok")
    args = ["--dataroot", str(ab_root), "--name", "ok", "--checkpoints_dir", str(tmp_path / "checkpoints"),
            "--num_test", "1"]
    runs = []
    for label in ("a", "b"):
        assert inference_main(args + ["--results_dir", str(tmp_path / label)]) == 0
        runs.append(tmp_path / label / "ok" / "val_latest")
    page = (runs[1] / "index.html").read_bytes()
    with pytest.raises(CompareError, match=r"--output .*run folder"):
        compare_runs(runs, runs[1] / "images")
    assert (runs[1] / "index.html").read_bytes() == page and not (runs[1] / "images" / "index.html").exists()


def test_prepare_output_inside_the_raw_data_is_refused(synthetic_city, capsys):
    out = synthetic_city / "gtFine" / "pairs"
    assert run_cli(prepare_main, ["--gtFine_dir", str(synthetic_city / "gtFine"), "--leftImg8bit_dir",
                                  str(synthetic_city / "leftImg8bit"), "--output_dir", str(out)]) == 2
    assert "--output_dir" in capsys.readouterr().err and not out.exists()


def test_a_failed_combine_leaves_the_output_folder_as_it_was(tmp_path, ab_root, capsys):
    fold_A, fold_B = _ab_folders(tmp_path, ab_root, n=3)
    last = sorted((fold_B / "train").iterdir())[-1]
    last.write_bytes(last.read_bytes()[:200])  # the third pair is corrupt
    out = tmp_path / "AB"
    (out / "train").mkdir(parents=True)
    (out / "train" / "keep.txt").write_bytes(b"the user's file")
    assert run_cli(combine_main, ["--fold_A", str(fold_A), "--fold_B", str(fold_B), "--fold_AB", str(out)]) == 2
    assert last.name in capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["train", "train/keep.txt"]
    assert (out / "train" / "keep.txt").read_bytes() == b"the user's file"


# ---------------------------------------------------------------------------------------------------- 9. link loops
def test_a_symlink_loop_does_not_multiply_the_samples(tmp_path, ab_root, capsys):
    train_dir = tmp_path / "data" / "train"
    (train_dir / "sub").mkdir(parents=True)
    files = sorted((ab_root / "train").iterdir())[:6]
    for f in files[:3]:
        shutil.copy(f, train_dir / f.name)
    for f in files[3:]:
        shutil.copy(f, train_dir / "sub" / f.name)
    (train_dir / "sub" / "loop").symlink_to(train_dir)  # sub/loop/sub/loop/... forever
    (train_dir / "again").symlink_to(train_dir / "sub")
    (train_dir / "twin.png").symlink_to(train_dir / files[0].name)
    dataset = AlignedDataset(tmp_path / "data", "train", load_size=64, crop_size=64)
    assert len(dataset) == 7  # 6 images + the file link
    err = capsys.readouterr().err
    assert "twin.png" in err and "1 file(s)" in err and "skipped 2 folder(s)" in err


# ---------------------------------------------------------------------------------------------------- rough edges
@pytest.mark.parametrize("target", ["results_file", "checkpoints_file", "demo_out_file"])
def test_output_paths_that_are_files_give_one_sentence(tmp_path, ab_root, capsys, target):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    if target == "results_file":
        make_run(tmp_path / "checkpoints", "ok")
        code = inference_main(["--dataroot", str(ab_root), "--name", "ok", "--checkpoints_dir",
                          str(tmp_path / "checkpoints"), "--results_dir", str(blocker), "--num_test", "1"])
        flag = "--results_dir"
    elif target == "checkpoints_file":
        code, flag = train_main(tiny_args(ab_root, blocker, "x")), "--checkpoints_dir"
    else:
        sys.path.insert(0, str(REPO))
        try:
            import demo
        finally:
            sys.path.remove(str(REPO))
        code, flag = demo.main(["--out", str(blocker / "sub")]), "--out"
    assert code == 2
    err = capsys.readouterr().err
    assert f"{flag} " in err and f"because {blocker} is a file" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_unloadable_states_are_explained_in_our_words(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "s", "--max_dataset_size", "2", "--max_iters", "1")
    assert train_main(args) == 0
    state_file = tmp_path / "s/training_state.pth"
    state_file.write_bytes(state_file.read_bytes()[:1000])  # truncated
    capsys.readouterr()
    assert train_main(args + ["--continue_train"]) == 2
    err = capsys.readouterr().err.strip()
    assert "training_state.pth" in err and "--name" in err and "Traceback" not in err
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": 1, "x": Payload()}, state_file)
    assert train_main(args + ["--continue_train"]) == 2
    assert "training_state.pth" in (err := capsys.readouterr().err) and "Traceback" not in err
    assert not marker.exists()


def test_orphan_tmp_files_are_removed_at_start(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "o", "--max_dataset_size", "2", "--max_iters", "1")
    assert train_main(args) == 0
    orphans = [tmp_path / "o/.training_state.pth.k1ll3d.tmp", tmp_path / "o/web/images/.epoch001_fake_B.png.x.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"0" * 1000)
    keep = tmp_path / "o/notes.tmp"  # not one of ours (not hidden): kept
    keep.write_text("mine")
    assert train_main(args + ["--continue_train", "--max_iters", "2"]) == 0
    assert "removed 2 temporary file(s) left by an interrupted save" in capsys.readouterr().out
    assert not any(p.exists() for p in orphans) and keep.read_text() == "mine"


def test_resume_on_other_data_is_refused_then_allowed_by_override(ab_root, tmp_path, capsys):
    args = tiny_args(ab_root, tmp_path, "d", "--max_iters", "1")
    assert train_main(args) == 0
    capsys.readouterr()
    smaller = tiny_args(ab_root, tmp_path, "d", "--max_dataset_size", "6", "--continue_train", "--max_iters", "2")
    assert train_main(smaller) == 2
    err = capsys.readouterr().err
    assert f"was trained on 8 images of {ab_root} but --dataroot {ab_root} now gives 6 images" in err
    flags = advice_flags(err, r"or add (--override dataroot) to continue on the new data")
    assert train_main(smaller + flags) == 0
    assert "--override dataroot: the run" in capsys.readouterr().out
    state = torch.load(tmp_path / "d/training_state.pth", weights_only=True)
    assert state["data"]["size"] == 6


# ---------------------------------------------------------------------------------------------------- keep it fixed
_CHILD = textwrap.dedent("""
    import os, signal, sys
    kill_at, phase = int(os.environ["KILL_AT"]), os.environ["KILL_PHASE"]
    count = {"replace": 0, "fsync": 0}
    real_replace, real_fsync = os.replace, os.fsync

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst):
        if str(dst).endswith(".pth"):
            count["replace"] += 1
            if count["replace"] == kill_at and phase == "before_rename":
                die()
        real_replace(src, dst)
        if str(dst).endswith(".pth") and count["replace"] == kill_at and phase == "after_rename":
            die()

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if name.endswith(".tmp") and ".pth." in name:
            count["fsync"] += 1
            if count["fsync"] == kill_at and phase == "mid_write":
                os.ftruncate(fd, os.fstat(fd).st_size // 2)  # a half-written file on disk
                die()
        real_fsync(fd)

    os.replace, os.fsync = replace, fsync
    from pix2pix_tr.training.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _train_child(args, kill_at=0, phase="none"):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "KILL_AT": str(kill_at),
           "KILL_PHASE": phase}
    return subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc/self/fd and SIGKILL")
def test_sigkill_at_random_moments_of_the_saves(ab_root, tmp_path):
    extra = ("--batch_size", "1", "--max_dataset_size", "3", "--n_epochs", "2", "--n_epochs_decay", "2",
             "--save_latest_freq", "1")
    ref = _train_child(tiny_args(ab_root, tmp_path / "ref", "r", *extra))
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(12)
    args = tiny_args(ab_root, tmp_path / "kill", "r", *extra)
    run_dir, kills, finished, phases = tmp_path / "kill" / "r", 0, False, set()
    for attempt in range(40):
        resume = ["--continue_train"] if (run_dir / "training_state.pth").exists() else []
        phase = rng.choice(["mid_write", "before_rename", "after_rename"]) if kills < 12 else "none"
        proc = _train_child(args + resume, rng.randint(1, 5), phase)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            phases.add(phase)
            for path in run_dir.glob("*.pth"):  # every checkpoint on disk is whole and safe to load
                torch.load(path, map_location="cpu", weights_only=True)
            continue
        assert proc.returncode == 0, proc.stderr
        if "training finished" in proc.stdout or "already finished" in proc.stdout:
            finished = True
            break
    assert finished and kills >= 10 and len(phases) == 3, (finished, kills, phases)
    print(f"{kills} SIGKILLs ({', '.join(sorted(phases))}) in {attempt + 1} runs")
    assert not list(run_dir.rglob(".*.tmp"))
    ref_dir = tmp_path / "ref" / "r"
    for name in ("latest_net_G.pth", "latest_net_D.pth", *(f"{e}_net_{w}.pth" for e in (1, 2, 3, 4) for w in "GD")):
        assert state_equal(torch.load(run_dir / name, weights_only=True),
                           torch.load(ref_dir / name, weights_only=True)), name
    assert loss_columns(run_dir / "loss_log.csv") == loss_columns(ref_dir / "loss_log.csv")
    entries = json.loads((run_dir / "web/gallery.json").read_text())
    entries = entries["entries"] if isinstance(entries, dict) else entries
    assert len(entries) == 4


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs a size-limited tmpfs: mounting one needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_keeps_the_last_checkpoint_and_resumes_exactly(reference, ab_root, tmp_path):
    ref_dir, ref = reference
    with _tmpfs(tmp_path / "small", "48m") as ckpt:
        filler = ckpt / f"filler-{uuid.uuid4().hex}"

        def fill_disk(total_iters):
            if total_iters == 6:  # in epoch 2, after epoch 1's checkpoint: leave about 64 KB
                free = shutil.disk_usage(ckpt).free
                with open(filler, "wb") as handle:
                    handle.truncate(0)
                    handle.write(b"\0" * max(0, free - 65536))

        with pytest.raises(NoSpaceLeft, match=rf"no space left on {re.escape(str(ckpt / 'full'))} .*\d+ MB.*"
                                              r"--continue_train"):
            run(ab_root, ckpt, "full", after_iteration=fill_disk)
        for path in (ckpt / "full").glob("*.pth"):
            torch.load(path, weights_only=True)
        assert torch.load(ckpt / "full/training_state.pth", weights_only=True)["total_iters"] == 4
        assert not list((ckpt / "full").rglob(".*.tmp"))
        filler.unlink()  # free the space, then resume as advised
        assert train_main(tiny_args(ab_root, ckpt, "full", "--continue_train")) == 0
        assert state_equal(torch.load(ckpt / "full/latest_net_G.pth", weights_only=True), ref.G.state_dict())
        assert loss_columns(ckpt / "full/loss_log.csv") == loss_columns(ref_dir / "loss_log.csv")


def test_read_only_output_folders_give_one_sentence(ab_root, tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "16m") as ro:
        make_run(ro / "checkpoints", "ok")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        assert train_main(tiny_args(ab_root, ro / "checkpoints", "new")) == 2
        err = capsys.readouterr().err
        assert "--checkpoints_dir" in err and "is not writable (Read-only file system)" in err
        assert inference_main(["--dataroot", str(ab_root), "--name", "ok", "--checkpoints_dir", str(ro / "checkpoints"),
                          "--results_dir", str(ro / "results")]) == 2
        err = capsys.readouterr().err
        assert "--results_dir" in err and "cannot be created (Read-only file system)" in err


# ---------------------------------------------------------------------------------------------------- issue 21
def test_a_new_run_never_writes_into_a_folder_holding_another_runs_weights(ab_root, tmp_path, capsys):
    """Issue 21 #3: a copied run or an official pretrained folder (weights, no training state) is refused without
    --continue_train, naming what is there and the choices; each choice, followed as written, works."""
    args = tiny_args(ab_root, tmp_path, "copied", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    assert train_main(args) == 0
    run_dir = tmp_path / "copied"
    (run_dir / "training_state.pth").unlink()  # what a copy of the weights alone looks like
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "already holds another run's files (1_net_D.pth, 1_net_G.pth, latest_net_D.pth, latest_net_G.pth)" in err
    assert "add --continue_train to start a new run from its latest weights" in err and "another --name" in err
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing written: not the options, not the log, not the gallery
    assert train_main(args + ["--continue_train"]) == 0  # the first choice, as advised
    assert (run_dir / "pretrained" / "1_net_G.pth").read_bytes() == before[Path("1_net_G.pth")]
    # epoch files only (no latest_net_G.pth): --continue_train would have nothing to start from, so it is not offered
    only_epochs = tmp_path / "epochs"
    only_epochs.mkdir()
    for which in ("G", "D"):
        shutil.copy(run_dir / "pretrained" / f"1_net_{which}.pth", only_epochs / f"1_net_{which}.pth")
    other = tiny_args(ab_root, tmp_path, "epochs", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    for extra in ([], ["--continue_train"]):
        assert train_main(other + extra) == 2
        err = capsys.readouterr().err
        assert "neither a training state nor latest_net_G.pth" in err and "add --continue_train" in err
    for which in ("G", "D"):  # the advice for starting from epoch 1, followed as written
        shutil.copy(only_epochs / f"1_net_{which}.pth", only_epochs / f"latest_net_{which}.pth")
    assert train_main(other + ["--continue_train"]) == 0
    # a folder left by a run that saved no weights (it diverged at once) is reused, as that run's advice says
    empty = tmp_path / "nothing_saved"
    empty.mkdir()
    (empty / "train_opt.txt").write_text("old options")
    assert train_main(tiny_args(ab_root, tmp_path, "nothing_saved", "--max_dataset_size", "2", "--n_epochs_decay",
                                "0")) == 0


def _small_copy(ab_root, tmp_path, n=2):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "val").mkdir()
    for f in sorted((ab_root / "train").iterdir())[:n]:
        shutil.copy(f, data / "train" / f.name)
    return data


def test_images_that_do_not_fit_the_network_are_one_sentence(ab_root, tmp_path, capsys):
    """Rough, issue 21: --preprocess none keeps the images' 64x64 halves, which unet_128 cannot take (exit 1 and a
    traceback from inside the network before); the same images fit unet_64."""
    args = tiny_args(ab_root, tmp_path, "none", "--preprocess", "none", "--max_dataset_size", "2", "--n_epochs_decay",
                     "0")
    assert train_main(args + ["--netG", "unet_128"]) == 2
    err = capsys.readouterr().err
    assert "--netG unet_128 needs image sides that are multiples of 128" in err and "64x64 halves" in err
    assert "Traceback" not in err and not (tmp_path / "none").exists()
    assert train_main(args) == 0  # unet_64: the sizes fit


def test_a_batch_of_images_of_mixed_sizes_is_one_sentence(ab_root, tmp_path, capsys):
    """Rough, issue 21: scale_width keeps each image's aspect ratio, so batch 2 of mixed heights cannot be stacked
    (the collate failed with a traceback)."""
    from PIL import Image

    data = _small_copy(ab_root, tmp_path)
    tall = sorted((data / "train").iterdir())[1]
    Image.open(tall).resize((128, 32)).save(tall)  # halves 64x32 instead of 64x64
    args = tiny_args(data, tmp_path, "mixed", "--preprocess", "scale_width", "--load_size", "64", "--crop_size", "32",
                     "--netG", "resnet_6blocks", "--n_epochs_decay", "0")
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "--batch_size 2 stacks the samples of a batch into one tensor" in err and tall.name in err
    assert "64x32" in err and "Traceback" not in err
    assert train_main(args + ["--batch_size", "1"]) == 0  # the first remedy, as written


def test_a_lock_that_is_a_folder_is_one_sentence(ab_root, tmp_path, capsys):
    (tmp_path / "locked" / ".lock").mkdir(parents=True)
    assert train_main(tiny_args(ab_root, tmp_path, "locked")) == 2
    err = capsys.readouterr().err
    assert ".lock is a folder" in err and "--name" in err and "Traceback" not in err


def test_a_corrupt_image_read_by_a_loader_worker_is_one_sentence(ab_root, tmp_path, capsys):
    """Rough, issue 21: with --num_threads 2 the DatasetError came back wrapped in the worker's traceback; it now
    crosses the worker boundary as its own sentence (for train.py and test.py alike)."""
    data = _small_copy(ab_root, tmp_path)
    broken = sorted((data / "train").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    assert train_main(tiny_args(data, tmp_path, "w", "--num_threads", "2", "--n_epochs_decay", "0")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]  # (the progress bar shares stderr)
    assert len(lines) == 1 and lines[0].startswith("train.py: error: cannot read the image ")
    assert broken.name in lines[0]
    assert "Traceback" not in err and "DataLoader worker" not in err
    make_run(tmp_path / "checkpoints", "ok")
    shutil.copy(broken, data / "val" / broken.name)
    assert inference_main(["--dataroot", str(data), "--name", "ok", "--checkpoints_dir", str(tmp_path / "checkpoints"),
                           "--results_dir", str(tmp_path / "results"), "--num_threads", "2"]) == 2
    err = capsys.readouterr().err
    assert "test.py: error: cannot read the image " in err and broken.name in err and "DataLoader worker" not in err


@pytest.mark.parametrize("where", ["val", "root", "parent_of_data"])
def test_checkpoints_never_overlap_any_part_of_the_dataroot(ab_root, tmp_path, capsys, where):
    """Rough, issue 21: --checkpoints_dir in another split of the data (not only DATAROOT/PHASE) wrote the run into
    the data; the data inside the run folder is refused too. Nothing is created before the refusal."""
    data = _small_copy(ab_root, tmp_path)
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    if where == "parent_of_data":  # --dataroot CKPT/NAME/data: the run folder would hold the data
        args = tiny_args(data, tmp_path, "data")
        args[args.index("--dataroot") + 1] = str(data)
        args[args.index("--checkpoints_dir") + 1] = str(tmp_path)
        args[args.index("--name") + 1] = "data"
        expected = "--checkpoints_dir/--name"
    else:
        ckpt = data / "val" / "ckpt" if where == "val" else data
        args, expected = tiny_args(data, ckpt, "run"), "is inside --dataroot"
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == before


def test_a_run_that_fails_before_its_first_state_leaves_no_weights(ab_root, tmp_path, capsys, monkeypatch):
    """The weights a run wrote before committing its first training state (an epoch's files, then a full disk on the
    state) are removed, so its advice "run the same command again" is not refused as another run's folder; the
    weights of a folder it started from are kept."""
    import errno

    real_save = torch.save

    def state_never_fits(obj, f, *args, **kwargs):
        if ".training_state.pth" in str(getattr(f, "name", "")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", state_never_fits)
    args = tiny_args(ab_root, tmp_path, "f", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    assert train_main(args) == 3
    assert not list((tmp_path / "f").glob("*.pth"))  # 1_net_*.pth and latest_net_*.pth were written, then removed
    assert "run the same command again" in capsys.readouterr().err
    # a start from weights that fails the same way keeps the weights it started from (moved to pretrained/)
    monkeypatch.setattr(torch, "save", real_save)
    assert train_main(args) == 0
    (tmp_path / "f" / "training_state.pth").unlink()
    monkeypatch.setattr(torch, "save", state_never_fits)
    assert train_main(args + ["--continue_train"]) == 3
    assert sorted(p.name for p in (tmp_path / "f").rglob("*.pth")) == ["1_net_D.pth", "1_net_G.pth",
                                                                       "latest_net_D.pth", "latest_net_G.pth"]
    assert all(p.parent.name == "pretrained" for p in (tmp_path / "f").rglob("*.pth"))
    monkeypatch.setattr(torch, "save", real_save)
    assert train_main(args + ["--continue_train"]) == 0  # starts from the kept weights, as before


def test_a_run_killed_before_its_first_state_is_rerun_by_the_same_command(ab_root, tmp_path, capsys, monkeypatch):
    """kill -9 between a new run's first weights and its first state leaves weights without a state; the folder's
    .uncommitted mark says they are an interrupted start's, so the same command runs again (a copied run has no mark
    and is refused: test_a_new_run_never_writes_into_a_folder_holding_another_runs_weights)."""
    import pix2pix_tr.io as io_module
    import pix2pix_tr.training.loop as loop_module

    real_replace = os.replace

    def die_before_the_state(src, dst):
        if Path(dst).name == "training_state.pth":
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", die_before_the_state)
    monkeypatch.setattr(loop_module, "remove_uncommitted_weights", lambda *a: None)  # SIGKILL: no cleanup runs
    args = tiny_args(ab_root, tmp_path, "k9", "--max_dataset_size", "2", "--n_epochs_decay", "0")
    with pytest.raises(Killed):
        train_main(args)
    run_dir = tmp_path / "k9"
    assert (run_dir / ".uncommitted").exists() and (run_dir / "latest_net_G.pth").exists()
    assert not (run_dir / "training_state.pth").exists()
    monkeypatch.setattr(io_module.os, "replace", real_replace)
    capsys.readouterr()
    assert train_main(args) == 0
    assert "removed 4 network file(s) of a run started in" in capsys.readouterr().out
    assert (run_dir / "training_state.pth").exists() and not (run_dir / ".uncommitted").exists()
