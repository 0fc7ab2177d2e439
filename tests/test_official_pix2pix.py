"""Coming from the official pix2pix: its checkpoint folders, option files, old state dicts and numbered data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.inference import CheckpointMismatchError, main, read_options_txt, run_test
from pix2pix_tr.io import atomic_torch_save
from pix2pix_tr.options import format_options, parse_test, parse_train
from conftest import make_generator as _make_generator
from conftest import make_run

#: An options table as the official pix2pix's train.py prints and saves it (BaseOptions.print_options).
OFFICIAL_TXT = """----------------- Options ---------------
               batch_size: 1                             
                    beta1: 0.5                           
          checkpoints_dir: ./checkpoints                 
           continue_train: False                         
                crop_size: 64                            \t[default: 256]
                 dataroot: ./datasets/cityscapes         \t[default: None]
             dataset_mode: aligned                       
                direction: BtoA                          \t[default: AtoB]
                  gpu_ids: 0                             
                 input_nc: 3                             
                  isTrain: True                          \t[default: None]
                load_size: 72                            \t[default: 286]
                     name: cityscapes_pix2pix            \t[default: experiment_name]
                      ngf: 8                             \t[default: 64]
                     netG: unet_64                       \t[default: resnet_9blocks]
               no_dropout: False                         
                     norm: batch                         \t[default: instance]
                output_nc: 3                             
               preprocess: resize_and_crop               
----------------- End -------------------
"""  # noqa: W291 - the official file pads values with spaces


def _old_state_dict(net: torch.nn.Module) -> dict:
    """What PyTorch < 0.4.1 saved (and many published pix2pix models hold): no num_batches_tracked."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def _args(ckpts, results, ab_root, name, *extra):
    return ["--dataroot", str(ab_root), "--name", name, "--checkpoints_dir", str(ckpts), "--results_dir",
            str(results), "--num_test", "2", "--eval", *extra]


def _fakes(run_dir):
    return {p.name: np.asarray(Image.open(p)) for p in sorted((run_dir / "images").glob("*_fake_B.png"))}


def test_read_options_txt_reads_the_official_table_and_ours():
    opts = read_options_txt_from_text(OFFICIAL_TXT)
    assert opts["direction"] == "BtoA" and opts["ngf"] == 8 and opts["netG"] == "unet_64"
    assert opts["no_dropout"] is False and opts["dataroot"] == "./datasets/cityscapes" and opts["gpu_ids"] == 0
    ours = parse_train(["--dataroot", "d", "--ngf", "16", "--no_dropout", "--direction", "BtoA", "--lr", "0.001"])
    back = read_options_txt_from_text(format_options(ours))
    assert {k: back[k] for k in ("ngf", "no_dropout", "direction", "lr", "netG")} == \
        {"ngf": 16, "no_dropout": True, "direction": "BtoA", "lr": 0.001, "netG": "unet_256"}
    legacy = read_options_txt_from_text("which_direction: BtoA\nwhich_model_netG: unet_128\nfineSize: 128\n")
    assert legacy == {"direction": "BtoA", "netG": "unet_128", "crop_size": 128}


def read_options_txt_from_text(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_opt.txt"
        path.write_text(text)
        return read_options_txt(path)


def test_official_folder_with_train_opt_txt_and_an_old_state_dict(tmp_path, ab_root, capsys):
    """Same weights, options from our train_opt.json or from the official train_opt.txt: identical images."""
    ours = make_run(tmp_path / "ckpt", "ours")  # unet_64, ngf 8, batch norm, BtoA, crop 64
    official = tmp_path / "ckpt" / "official"
    official.mkdir()
    (official / "train_opt.txt").write_text(OFFICIAL_TXT)
    atomic_torch_save(_old_state_dict(ours), official / "latest_net_G.pth")
    a = run_test(parse_test(_args(tmp_path / "ckpt", tmp_path / "res", ab_root, "ours")), progress=False)
    capsys.readouterr()
    b = run_test(parse_test(_args(tmp_path / "ckpt", tmp_path / "res", ab_root, "official")), progress=False)
    out = capsys.readouterr().out
    assert "network options from " in out and "train_opt.txt (the official pix2pix's format)" in out
    assert b["options"]["direction"] == "BtoA" and b["generator"] == a["generator"]
    fa, fb = _fakes(tmp_path / "res" / "ours" / "val_latest"), _fakes(tmp_path / "res" / "official" / "val_latest")
    assert len(fa) == 2 and fa.keys() == fb.keys()
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)


def test_weights_only_folder_takes_the_options_from_the_command_line(tmp_path, ab_root, capsys):
    net = _make_generator(ngf=8, netG="unet_64")
    folder = tmp_path / "ckpt" / "pretrained"
    folder.mkdir(parents=True)
    atomic_torch_save(_old_state_dict(net), folder / "latest_net_G.pth")
    args = _args(tmp_path / "ckpt", tmp_path / "res", ab_root, "pretrained")
    assert main(args) == 2  # no options file and no --direction: refuse rather than default to AtoB
    err = capsys.readouterr().err
    assert "pass at least --direction AtoB or BtoA" in err and len(err.strip().splitlines()) == 1
    # the options given, but ngf wrong: the checkpoint's own shapes name the flag
    assert main(args + ["--direction", "BtoA", "--netG", "unet_64", "--ngf", "16", "--crop_size", "64"]) == 2
    err = capsys.readouterr().err
    assert "ngf 16 -> 8" in err and "pass --ngf 8 to test.py" in err
    assert main(args + ["--direction", "BtoA", "--netG", "unet_64", "--ngf", "8", "--crop_size", "64"]) == 0
    out = capsys.readouterr().out
    assert "network options from the command line" in out and "unet_64, ngf 8, norm batch" in out


@pytest.mark.parametrize("saved, built, flags", [
    (dict(netG="resnet_6blocks", use_dropout=False), ("--netG", "resnet_6blocks"), "pass --no_dropout to test.py"),
    (dict(netG="unet_128", ngf=4), ("--netG", "unet_64"), "pass --netG unet_128 --ngf 4 to test.py"),
    (dict(norm="instance"), ("--netG", "unet_64", "--norm", "batch"), r"pass --norm instance to test.py"),
])
def test_mismatch_is_read_off_the_checkpoint(tmp_path, ab_root, saved, built, flags):
    net = _make_generator(**{"ngf": 8, "netG": "unet_64", **saved})
    folder = tmp_path / "ckpt" / "run"
    folder.mkdir(parents=True)
    atomic_torch_save(net.state_dict(), folder / "latest_net_G.pth")
    args = _args(tmp_path / "ckpt", tmp_path / "res", ab_root, "run", "--direction", "BtoA", "--ngf", "8",
                 "--crop_size", "64", *built)
    with pytest.raises(CheckpointMismatchError, match=flags):
        run_test(parse_test(args), progress=False)
    fixed = args + flags[len("pass "):-len(" to test.py")].split()
    fixed += ["--crop_size", "128"] if "unet_128" in flags else []  # which test.py then asks for, as tested before
    assert run_test(parse_test(fixed), progress=False)["n_images"] == 2  # the advice works when followed


def test_official_numbered_data_under_test_works_with_phase_test(tmp_path, ab_root):
    """The official preparation numbers its files (0.jpg, 1.jpg, ...) and puts val under test/."""
    make_run(tmp_path / "ckpt", "run")
    data = tmp_path / "official_data" / "test"
    data.mkdir(parents=True)
    for i, src in enumerate(sorted((ab_root / "val").glob("*.png"))[:2]):
        Image.open(src).convert("RGB").save(data / f"{i}.jpg", quality=95)
    args = ["--dataroot", str(data.parent), "--name", "run", "--checkpoints_dir", str(tmp_path / "ckpt"),
            "--results_dir", str(tmp_path / "res"), "--phase", "test", "--eval"]
    res = run_test(parse_test(args), progress=False)
    assert res["stems"] == ["0", "1"]
    assert (tmp_path / "res" / "run" / "test_latest" / "images" / "0_fake_B.png").is_file()
    shutil.rmtree(data.parent)


def _official_folder(ab_root, ckpt, name, ngf="8"):
    """A folder as the official pix2pix leaves it: weights (old state dicts), train_opt.txt, loss_log.txt, web/."""
    from pix2pix_tr.training.loop import train
    from conftest import tiny_args

    train(parse_train(tiny_args(ab_root, ckpt, name, "--n_epochs_decay", "0", "--ngf", ngf)))
    run = ckpt / name
    for item in list(run.iterdir()):
        if item.name not in ("latest_net_G.pth", "latest_net_D.pth"):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for which in ("G", "D"):
        state = torch.load(run / f"latest_net_{which}.pth", weights_only=True)
        torch.save(_old_state_dict_of(state), run / f"latest_net_{which}.pth")
    (run / "train_opt.txt").write_text(OFFICIAL_TXT)
    (run / "loss_log.txt").write_text("================ Training Loss ================\n")
    (run / "web").mkdir()
    (run / "web" / "index.html").write_text("<html>official</html>")
    return run


def _old_state_dict_of(state):
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_continue_train_from_an_official_folder_starts_a_run_from_its_weights(ab_root, tmp_path, capsys):
    from pix2pix_tr.training.cli import main as train_main
    from pix2pix_tr.training.loop import train
    from conftest import tiny_args

    run = _official_folder(ab_root, tmp_path, "official")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    # its train_opt.txt says BtoA: continuing the other way round is refused (issue 21 #1), as for our own runs
    assert train_main(tiny_args(ab_root, tmp_path, "official", "--continue_train", "--n_epochs_decay", "0")) == 2
    assert "--direction is 'AtoB' but the weights in" in capsys.readouterr().err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before
    result = train(parse_train(tiny_args(ab_root, tmp_path, "official", "--continue_train", "--n_epochs_decay", "0",
                                         "--direction", "BtoA")))
    out = capsys.readouterr().out
    assert "found weights but no training state" in out and "start fresh" in out
    assert result.status == "finished" and result.total_iters == 4  # a whole new run: epoch 1 from iteration 0
    kept = run / "pretrained"
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert (run / "training_state.pth").is_file() and (run / "train_opt.json").is_file()
    # a second --continue_train resumes the new run (it has a training state now)
    assert train(parse_train(tiny_args(ab_root, tmp_path, "official", "--continue_train", "--n_epochs_decay",
                                       "1", "--direction", "BtoA"))).total_iters == 8


def test_continue_train_from_weights_of_other_options_names_the_flag(ab_root, tmp_path, capsys):
    from pix2pix_tr.training.cli import main as train_main
    from conftest import tiny_args

    _official_folder(ab_root, tmp_path, "wide", ngf="16")
    assert train_main(tiny_args(ab_root, tmp_path, "wide", "--continue_train", "--direction", "BtoA")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("train.py: error: --continue_train: ")
    assert "--ngf 16" in errors[0]
    assert train_main(tiny_args(ab_root, tmp_path, "wide", "--continue_train", "--direction", "BtoA", "--ngf",
                                "16")) == 0  # as advised


def test_original_preparation_writes_the_official_scripts_bytes(synthetic_city, tmp_path):
    """--original = what the official datasets/prepare_cityscapes_dataset.py writes for the same frame (its steps
    re-done here: RGB, PIL's default resize of both halves, side by side, JPEG quality 100, no subsampling)."""
    from pix2pix_tr.data.cityscapes import prepare_cityscapes

    size = 32
    written = prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", tmp_path / "ours",
                                 size, splits=["val"], label_resize="bicubic", image_format="jpg", limit=2)
    for stem in written["val"]:
        city = stem.split("_")[0]
        photo = Image.open(synthetic_city / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        label = Image.open(synthetic_city / "gtFine" / "val" / city / f"{stem}_gtFine_color.png")
        pair = Image.new("RGB", (2 * size, size))
        pair.paste(label.convert("RGB").resize((size, size)), (size, 0))
        pair.paste(photo.convert("RGB").resize((size, size)), (0, 0))
        official = tmp_path / f"official_{stem}.jpg"
        pair.save(official, format="JPEG", subsampling=0, quality=100)
        assert (tmp_path / "ours" / "val" / f"{stem}.jpg").read_bytes() == official.read_bytes()
