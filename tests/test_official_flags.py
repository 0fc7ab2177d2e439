"""The official pix2pix's train.py/test.py flags (issue 23, part 4): each works with the official meaning or is
refused in one sentence naming our replacement; docs/migration.md's table is generated from the code's table;
the official README's pix2pix commands run unchanged.

Training runs use the tiny synthetic city (ngf = ndf = 8, unet_64, 64x64 crops), except the README's own command,
which runs at its full default size for one iteration (marked slow).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
from pathlib import Path

import pytest
import torch

from pix2pix_tr import options
from pix2pix_tr.options import OFFICIAL_FLAGS, official_flags_markdown, parse_train
from pix2pix_tr.training import train
from pix2pix_tr.training.cli import main as train_main

REPO = Path(__file__).resolve().parents[1]


def tiny(ab_root, ckpt, name, *extra):
    return ["--dataroot", str(ab_root), "--checkpoints_dir", str(ckpt), "--name", name, "--ngf", "8", "--ndf", "8",
            "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size", "2", "--num_threads", "0",
            "--n_epochs", "1", "--n_epochs_decay", "1", "--save_epoch_freq", "1", "--print_freq", "1",
            "--device", "cpu", "--seed", "3", *extra]


def refused(argv, capsys, parse=parse_train):
    """The stderr of a refused command line (exit 2, our short usage line and one error sentence)."""
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage: ") and "error: " in lines[1], err
    return lines[1]


# ---------------------------------------------------------------------------------------------------- the table
def test_the_migration_table_is_generated_from_the_code_table():
    text = (REPO / "docs" / "migration.md").read_text()
    block = re.search(r"<!-- official-flags:begin .*?-->\n(.*?)<!-- official-flags:end -->", text, re.S)
    assert block, "docs/migration.md lost its generated table"
    assert block.group(1) == official_flags_markdown()


def test_every_official_flag_is_known_to_our_parsers():
    """No official flag ends in argparse's 'unrecognized arguments': each is ours, honoured or refused."""
    known = {"train": {s for a in options.train_parser()._actions for s in a.option_strings},
             "test": {s for a in options.test_parser()._actions for s in a.option_strings}}
    missing = [(e.flag, script) for e in OFFICIAL_FLAGS for script in ("train", "test")
               if script in e.scripts and e.flag not in known[script]]
    assert missing == []
    assert len({e.flag for e in OFFICIAL_FLAGS}) == len(OFFICIAL_FLAGS)


@pytest.mark.parametrize("entry", [e for e in OFFICIAL_FLAGS if e.status == "refused" and "train" in e.scripts],
                         ids=lambda e: e.flag)
def test_each_refused_official_flag_names_its_replacement(entry, capsys):
    message = refused(["--dataroot", "d", entry.flag, "1"], capsys)
    assert entry.flag in message
    named = re.findall(r"`(--\w+)", entry.here)
    if entry.flag.startswith("--display_"):
        named = ["--tensorboard"]
    elif "CycleGAN" in entry.here:
        named = ["--model pix2pix"]
    assert named and all(flag in message for flag in named), message


@pytest.mark.parametrize("entry", [e for e in OFFICIAL_FLAGS if e.status == "refused" and "test" in e.scripts],
                         ids=lambda e: e.flag)
def test_each_refused_official_test_flag_names_its_replacement(entry, capsys):
    message = refused(["--dataroot", "d", entry.flag, "1"], capsys, parse=options.parse_test)
    named = re.findall(r"`(--\w+)", entry.here)
    assert entry.flag in message and named and all(flag in message for flag in named), message


@pytest.mark.parametrize("flag, bad, reason", [
    ("--model", "cycle_gan", "only pix2pix (and its generator alone, test) is implemented here"),
    ("--dataset_mode", "unaligned", "only aligned A|B pairs and single images are read here"),
    ("--model_suffix", "_A", "a pix2pix run has one, latest_net_G.pth"),
])
def test_test_py_takes_the_official_pix2pix_values_and_refuses_the_rest(flag, bad, reason, capsys):
    assert reason in refused(["--dataroot", "d", flag, bad], capsys, parse=options.parse_test)


@pytest.mark.parametrize("value, replacement", [("0", "use --device cuda:0"), ("1", "use --device cuda:1"),
                                                ("-1", "use --device cpu"), ("0,1", "torchrun --nproc_per_node 2")])
def test_gpu_ids_names_the_device_or_torchrun(value, replacement, capsys):
    assert replacement in refused(["--dataroot", "d", "--gpu_ids", value], capsys)


@pytest.mark.parametrize("flag, bad, reason", [
    ("--model", "cycle_gan", "only pix2pix (paired A|B training) is implemented here"),
    ("--model", "test", "use it with test.py"),
    ("--dataset_mode", "unaligned", "only aligned A|B pairs"),
    ("--dataset_mode", "single", "training needs A|B pairs: --dataset_mode aligned"),
    ("--pool_size", "50", "pix2pix keeps no pool of generated images"),
    ("--display_id", "1", "visdom is not used here: use --tensorboard"),
    ("--epoch", "5", "from 5_net_G.pth and 5_net_D.pth, copy them into a new run folder as latest_net_G.pth"),
    ("--load_iter", "100", "copy them into a new run folder as latest_net_G.pth"),
])
def test_honoured_flags_take_the_official_pix2pix_values_and_refuse_the_rest(flag, bad, reason, capsys):
    good = {"--model": "pix2pix", "--dataset_mode": "aligned", "--pool_size": "0", "--display_id": "-1",
            "--epoch": "latest", "--load_iter": "0"}[flag]
    opt = parse_train(["--dataroot", "d", flag, good])
    assert getattr(opt, flag[2:]) == (int(good) if good.lstrip("-").isdigit() else good)
    assert reason in refused(["--dataroot", "d", flag, bad], capsys)


def test_suffix_formats_the_name_as_the_official(capsys):
    opt = parse_train(["--dataroot", "d", "--name", "facades", "--suffix", "{model}_{netG}_size{load_size}"])
    assert opt.name == "facades_pix2pix_unet_256_size286"
    assert "--suffix '{nope}' cannot be formatted" in refused(["--dataroot", "d", "--suffix", "{nope}"], capsys)


# ---------------------------------------------------------------------------------------------------- honoured
def _epoch_lrs(run_dir):
    import csv

    with open(run_dir / "loss_log.csv", newline="") as handle:
        return {int(r["epoch"]): r["lr_G"] for r in csv.DictReader(handle)}


def test_epoch_count_numbers_a_new_run_and_positions_its_schedule(ab_root, tmp_path, capsys):
    """As the official: epochs N..n_epochs+n_epochs_decay, files named by those numbers, the schedule at N. On
    resume it must agree with the saved position (or be left out)."""
    args = ("--max_dataset_size", "2", "--n_epochs", "1", "--n_epochs_decay", "2")
    scratch = train(parse_train(tiny(ab_root, tmp_path, "scratch", *args)))
    later = train(parse_train(tiny(ab_root, tmp_path, "later", *args, "--epoch_count", "2")))
    assert later.status == "finished" and later.total_iters == 2 and later.epoch == scratch.epoch == 4
    assert sorted(p.name for p in (tmp_path / "later").glob("*_net_G.pth")) == ["2_net_G.pth", "3_net_G.pth",
                                                                                "latest_net_G.pth"]
    want, got = _epoch_lrs(tmp_path / "scratch"), _epoch_lrs(tmp_path / "later")
    assert got == {2: want[2], 3: want[3]} and want[2] != want[1]
    gallery = json.loads((tmp_path / "later" / "web" / "gallery.json").read_text())
    assert sorted(e["epoch"] for e in gallery["entries"]) == [2, 3]
    # resume: --epoch_count must be the saved run's next epoch
    train(parse_train(tiny(ab_root, tmp_path, "r", *args, "--max_iters", "1")))  # stopped at the start of epoch 2
    assert train_main(tiny(ab_root, tmp_path, "r", *args, "--continue_train", "--epoch_count", "3")) == 2
    assert "--epoch_count 3 disagrees with the saved run" in capsys.readouterr().err
    assert train_main(tiny(ab_root, tmp_path, "r", *args, "--continue_train", "--epoch_count", "2")) == 0
    capsys.readouterr()
    assert "past the last epoch" in refused(tiny(ab_root, tmp_path, "x", *args, "--epoch_count", "4"), capsys)


def test_epoch_count_continues_weights_without_a_state_as_the_official_resume(ab_root, tmp_path, capsys):
    """The official's resume: --continue_train --epoch_count N on a folder of weights (no optimiser state) goes on
    at epoch N with the schedule of epoch N."""
    args = ("--max_dataset_size", "2", "--n_epochs", "1", "--n_epochs_decay", "2")
    train(parse_train(tiny(ab_root, tmp_path, "scratch", *args)))
    train(parse_train(tiny(ab_root, tmp_path, "weights", *args, "--max_iters", "1")))
    for item in (tmp_path / "weights").iterdir():  # keep the weights alone, as the official saves them
        if item.name not in ("latest_net_G.pth", "latest_net_D.pth"):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    capsys.readouterr()
    result = train(parse_train(tiny(ab_root, tmp_path, "weights", *args, "--continue_train", "--epoch_count", "2")))
    assert "the new run's epochs and schedule start at epoch 2" in capsys.readouterr().out
    assert result.total_iters == 2 and sorted(p.name for p in (tmp_path / "weights").glob("[0-9]*_net_G.pth")) == [
        "2_net_G.pth", "3_net_G.pth"]
    want = _epoch_lrs(tmp_path / "scratch")
    assert _epoch_lrs(tmp_path / "weights") == {2: want[2], 3: want[3]}


def test_serial_batches_takes_the_samples_in_file_order(ab_root):
    from pix2pix_tr.training import TrainConfig
    from pix2pix_tr.training.distributed import init_distributed
    from pix2pix_tr.training.loop import build_data

    ctx = init_distributed("cpu")
    orders = {}
    for serial in (False, True):
        cfg = TrainConfig.from_options(parse_train(tiny(ab_root, "unused", "s", *(["--serial_batches"] * serial))))
        _, sampler, _ = build_data(cfg, ctx)
        sampler.set_epoch(3)
        orders[serial] = [index for _, index in sampler]
    assert orders[True] == list(range(8)) and sorted(orders[False]) == list(range(8)) and orders[False] != orders[True]


def test_save_by_iter_keeps_the_networks_of_each_latest_save(ab_root, tmp_path):
    result = train(parse_train(tiny(ab_root, tmp_path, "it", "--save_latest_freq", "2", "--save_by_iter")))
    run_dir = tmp_path / "it"
    # 4 iterations per epoch: the saves mid-epoch are at 2 and 6 (4 and 8 are epoch ends, saved as epochs)
    assert sorted(p.name for p in run_dir.glob("iter_*")) == ["iter_2_net_D.pth", "iter_2_net_G.pth",
                                                                "iter_6_net_D.pth", "iter_6_net_G.pth"]
    at_2, at_6 = (torch.load(run_dir / f"iter_{n}_net_G.pth", weights_only=True) for n in (2, 6))
    assert at_2.keys() == result.G.state_dict().keys()
    assert not all(torch.equal(at_2[k], at_6[k]) for k in at_2)


def test_no_html_update_html_freq_and_display_winsize(ab_root, tmp_path):
    train(parse_train(tiny(ab_root, tmp_path, "quiet", "--max_dataset_size", "2", "--no_html")))
    assert not (tmp_path / "quiet" / "web").exists() and (tmp_path / "quiet" / "loss_log.csv").is_file()
    # every 3 iterations the current epoch's row is refreshed, even in epochs that are not saved
    train(parse_train(tiny(ab_root, tmp_path, "html", "--save_epoch_freq", "5", "--n_epochs_decay", "2",
                           "--update_html_freq", "3", "--display_winsize", "128")))
    gallery = json.loads((tmp_path / "html" / "web" / "gallery.json").read_text())
    rows = {e["epoch"]: e["info"]["total_iters"] for e in gallery["entries"]}
    assert rows == {1: 3, 2: 6, 3: 12}  # 4 iterations per epoch; epoch 3 is the last, saved at its end
    assert 'width="128"' in (tmp_path / "html" / "web" / "index.html").read_text()


def test_verbose_prints_the_networks(ab_root, tmp_path, capsys):
    train(parse_train(tiny(ab_root, tmp_path, "v", "--max_dataset_size", "2", "--n_epochs_decay", "0", "--verbose")))
    out = capsys.readouterr().out
    assert "UnetGenerator(" in out and "NLayerDiscriminator(" in out
    assert re.search(r"\[Network G\] Total number of parameters : 0\.\d{3} M", out)


# ---------------------------------------------------------------------------------------------------- W&B
def _wandb_records(path: Path):
    """The records of an offline W&B run file (wandb's LevelDB-style log: 32 KiB blocks of chunks with a 7-byte
    header each, after a 7-byte file header), parsed as wandb's own protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room for a header: the rest of the block is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_use_wandb_logs_the_losses_and_the_gallery_images(ab_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    import wandb

    train(parse_train(tiny(ab_root, tmp_path, "wb", "--use_wandb", "--wandb_project_name", "facades_tr")))
    wandb.teardown()  # the run finished; W&B's service process writes the offline file on its own: let it end
    [run_file] = (tmp_path / "wandb_dir").glob("wandb/offline-run-*/run-*.wandb")
    history, project, config, kinds = [], None, {}, []
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "run":
            project = record.run.project
            config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
    assert kinds[-1] == "exit"  # the whole file
    assert project == "facades_tr" and config["name"] == "wb" and config["netG"] == "unet_64"
    import csv

    with open(tmp_path / "wb" / "loss_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = {h["_step"]: h for h in history}
    assert sorted(logged) == [int(r["total_iters"]) for r in rows] == list(range(1, 9))
    for row in rows:  # the same numbers as the loss log (which rounds to 6 digits)
        entry = logged[int(row["total_iters"])]
        for key in ("G_GAN", "G_L1", "D_real", "D_fake", "lr_G", "lr_D"):
            assert entry[key] == pytest.approx(float(row[key]), rel=1e-5), key
    images = {step: h for step, h in logged.items() if "fake_B/_type" in h}
    assert sorted(images) == [4, 8]  # the gallery rows: the ends of epochs 1 and 2
    for entry in images.values():
        for key in ("real_A", "fake_B", "real_B"):
            assert entry[f"{key}/_type"] == "image-file" and (entry[f"{key}/width"], entry[f"{key}/height"]) == (64, 64)
            assert (run_file.parent / "files" / entry[f"{key}/path"]).is_file()
    run_id = (tmp_path / "wb" / "wandb_run_id").read_text().strip()
    assert run_id == run_file.stem[len("run-"):]
    # --continue_train continues the same W&B run, from the resumed position
    train(parse_train(tiny(ab_root, tmp_path, "wb", "--use_wandb", "--wandb_project_name", "facades_tr",
                           "--continue_train", "--n_epochs_decay", "2")))
    wandb.teardown()
    files = sorted((tmp_path / "wandb_dir").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and {f.stem for f in files} == {f"run-{run_id}"}
    resumed = next(f for f in files if f != run_file)
    steps = [r.history.step.num for r in _wandb_records(resumed) if r.WhichOneof("record_type") == "history"]
    assert steps == [9, 10, 11, 12]


def test_use_wandb_without_the_package_is_one_sentence(monkeypatch, capsys):
    import importlib.util

    from pix2pix_tr.training.cli import parse

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert "--use_wandb needs the wandb package, which is not installed: pip install 'pix2pix-tr[wandb]'" in \
        refused(["--dataroot", "d", "--use_wandb"], capsys, parse=parse)


# ---------------------------------------------------------------------------------------------------- the README
def _official_layout(ab_root, cwd):
    """./datasets/facades as the official README expects, holding our A|B split (train/ and val/)."""
    facades = cwd / "datasets" / "facades"
    shutil.copytree(ab_root, facades)
    return facades


def _stop_after_first_iteration(monkeypatch):
    """The README's run is 200 epochs: stop it after its first iteration as Ctrl-C would (state saved, exit 0)."""
    import pix2pix_tr.training.loop as loop_module

    real_train = loop_module.train

    def train_one_iteration(cfg, **kwargs):
        return real_train(cfg, after_iteration=lambda n: os.kill(os.getpid(), signal.SIGTERM))

    monkeypatch.setattr(loop_module, "train", train_one_iteration)


OFFICIAL_TRAIN = ["--dataroot", "./datasets/facades", "--name", "facades_pix2pix", "--model", "pix2pix",
                  "--direction", "BtoA"]
OFFICIAL_TEST = OFFICIAL_TRAIN  # python test.py with the same flags


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # the official default, 2 CPUs
def test_the_official_readme_commands_run_unchanged(ab_root, tmp_path, monkeypatch, capsys):
    """`python train.py --dataroot ./datasets/facades --name facades_pix2pix --model pix2pix --direction BtoA`, at
    its full size (unet_256, ngf 64, 286 -> 256 crops), stopped after one iteration; then `python test.py` with the
    same flags, unchanged (our test.py reads val/, the official's default phase is test/)."""
    monkeypatch.chdir(tmp_path)
    _official_layout(ab_root, tmp_path)
    _stop_after_first_iteration(monkeypatch)
    assert train_main(OFFICIAL_TRAIN) == 0
    run_dir = tmp_path / "checkpoints" / "facades_pix2pix"
    state = torch.load(run_dir / "training_state.pth", weights_only=True)
    assert state["total_iters"] == 1 and state["options"]["direction"] == "BtoA"
    assert state["options"]["model"] == "pix2pix" and state["options"]["netG"] == "unet_256"
    from pix2pix_tr.inference import main as test_main

    assert test_main(OFFICIAL_TEST) == 0  # `python test.py ...` as the README writes it
    results = json.loads((tmp_path / "results" / "facades_pix2pix" / "val_latest" / "results.json").read_text())
    assert results["status"] == "complete" and results["n_images"] == 4


def test_the_official_readme_commands_run_with_tiny_networks(ab_root, tmp_path, monkeypatch):
    """The same training command, with flags appended only to make the networks tiny (the full size is the slow
    test), then the README's test command exactly as written."""
    from pix2pix_tr.inference import main as test_main

    monkeypatch.chdir(tmp_path)
    _official_layout(ab_root, tmp_path)
    _stop_after_first_iteration(monkeypatch)
    assert train_main(OFFICIAL_TRAIN + ["--ngf", "8", "--ndf", "8", "--netG", "unet_64", "--load_size", "72",
                                        "--crop_size", "64", "--num_threads", "0"]) == 0
    state = torch.load(tmp_path / "checkpoints" / "facades_pix2pix" / "training_state.pth", weights_only=True)
    assert state["total_iters"] == 1 and state["options"]["model"] == "pix2pix"
    assert test_main(OFFICIAL_TEST) == 0
    results = json.loads((tmp_path / "results" / "facades_pix2pix" / "val_latest" / "results.json").read_text())
    assert results["status"] == "complete" and results["n_images"] == 4 and results["options"]["direction"] == "BtoA"


# ---------------------------------------------------------------------------------------------------- test.py
@pytest.fixture(scope="module")
def saved_by_iter(ab_root, tmp_path_factory):
    """A tiny run saved with --save_by_iter: iter_2 and iter_6 networks beside latest (8 iterations)."""
    ckpt = tmp_path_factory.mktemp("by_iter")
    train(parse_train(tiny(ab_root, ckpt, "run", "--save_latest_freq", "2", "--save_by_iter", "--direction", "BtoA")))
    return ckpt


def _test_args(ab_root, ckpt, results, *extra):
    return ["--dataroot", str(ab_root), "--name", "run", "--checkpoints_dir", str(ckpt), "--results_dir",
            str(results), "--num_test", "2", "--eval", *extra]


def _images(folder, visual="fake_B"):
    import numpy as np
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "images").glob(f"*_{visual}.png"))}


def test_load_iter_tests_the_networks_save_by_iter_kept(ab_root, saved_by_iter, tmp_path):
    from pix2pix_tr.inference import main as test_main

    assert test_main(_test_args(ab_root, saved_by_iter, tmp_path / "res", "--load_iter", "6")) == 0
    out = tmp_path / "res" / "run" / "val_iter_6"
    assert json.loads((out / "results.json").read_text())["epoch"] == "iter_6"
    # the same images as the iter_6 weights copied in as a run's latest ones
    copy = tmp_path / "ckpt" / "run"
    copy.mkdir(parents=True)
    shutil.copy(saved_by_iter / "run" / "iter_6_net_G.pth", copy / "latest_net_G.pth")
    shutil.copy(saved_by_iter / "run" / "train_opt.json", copy / "train_opt.json")
    assert test_main(_test_args(ab_root, tmp_path / "ckpt", tmp_path / "res2")) == 0
    ours, theirs = _images(out), _images(tmp_path / "res2" / "run" / "val_latest")
    assert len(ours) == 2 and ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)
    assert test_main(_test_args(ab_root, saved_by_iter, tmp_path / "res3")) == 0  # latest: other weights
    latest = _images(tmp_path / "res3" / "run" / "val_latest")
    assert any((latest[k] != ours[k]).any() for k in ours)


def test_aspect_ratio_display_winsize_and_verbose_at_test_time(ab_root, saved_by_iter, tmp_path, capsys):
    from pix2pix_tr.inference import main as test_main

    for ratio, shape in (("2", (64, 128)), ("0.5", (128, 64))):
        results = tmp_path / f"r{ratio}"
        assert test_main(_test_args(ab_root, saved_by_iter, results, "--aspect_ratio", ratio)) == 0
        for visual in ("real_A", "fake_B", "real_B"):
            assert {image.shape[:2] for image in _images(results / "run" / "val_latest", visual).values()} == {shape}
    capsys.readouterr()
    assert test_main(_test_args(ab_root, saved_by_iter, tmp_path / "w", "--display_winsize", "96", "--verbose")) == 0
    assert 'width="96"' in (tmp_path / "w" / "run" / "val_latest" / "index.html").read_text()
    out = capsys.readouterr().out
    assert "UnetGenerator(" in out and "[Network G] Total number of parameters" in out


def test_use_wandb_at_test_time_logs_the_result_images(ab_root, saved_by_iter, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from pix2pix_tr.inference import main as test_main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert test_main(_test_args(ab_root, saved_by_iter, tmp_path / "res", "--use_wandb")) == 0
    wandb.teardown()
    [run_file] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    logged = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
              for r in _wandb_records(run_file) if r.WhichOneof("record_type") == "history"]
    [row] = [h for h in logged if "results/_type" in h]
    assert row["results/_type"] == "table-file" and row["results/nrows"] == 2
    table = json.loads((run_file.parent / "files" / row["results/path"]).read_text())
    assert table["columns"] == ["id", "real_A", "fake_B", "real_B"] and len(table["data"]) == 2
