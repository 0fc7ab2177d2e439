"""Data tools rerun into an existing output folder (issue 21, #11, and the interrupted preparation): continue
exactly, replace cleanly (--overwrite), or refuse in one sentence; a split whose writer was interrupted is
refused by the dataset with the command that finishes it, and that command works as printed."""

from __future__ import annotations

import json
import shlex
import shutil

import numpy as np
import pytest
from PIL import Image

from pix2pix_tr.data import AlignedDataset, DatasetError, make_synthetic_cityscapes, prepare_cityscapes
from pix2pix_tr.data import cityscapes as cityscapes_module
from pix2pix_tr.data.cli import combine_main, prepare_main, run_cli, synthetic_main
from pix2pix_tr.data.manifest import MANIFEST_NAME


def _prepare_argv(city, out, *extra):
    return ["--gtFine_dir", str(city / "gtFine"), "--leftImg8bit_dir", str(city / "leftImg8bit"), "--output_dir",
            str(out), "--quiet", *extra]


def _images(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))


def test_prepare_rerun_with_other_settings_is_refused_then_replaced_cleanly(synthetic_city, tmp_path, capsys):
    out = tmp_path / "ab"
    assert run_cli(prepare_main, _prepare_argv(synthetic_city, out, "--size", "64")) == 0
    before = {p: (out / p).read_bytes() for p in _images(out)}
    assert run_cli(prepare_main, _prepare_argv(synthetic_city, out, "--size", "32", "--limit", "5")) == 2
    err = capsys.readouterr().err
    assert "--output_dir" in err and "--size 64 (now 32)" in err and "--limit" in err and "--overwrite" in err
    assert {p: (out / p).read_bytes() for p in _images(out)} == before  # refused: nothing touched
    assert run_cli(prepare_main, _prepare_argv(synthetic_city, out, "--size", "32", "--limit", "5",
                                               "--overwrite")) == 0
    files = _images(out)
    assert len(files) == 9  # 5 train + 4 val (the val split has only 4 frames), no stale 64-pixel pair
    assert {Image.open(out / p).size for p in files} == {(64, 32)}
    assert len(AlignedDataset(out, "train", load_size=32, crop_size=32)) == 5


def test_prepare_rerun_with_the_same_settings_continues(synthetic_city, tmp_path, capsys):
    out = tmp_path / "ab"
    argv = _prepare_argv(synthetic_city, out, "--size", "32")
    assert run_cli(prepare_main, argv) == 0
    victim = sorted((out / "train").glob("*.png"))[2]
    kept = sorted((out / "train").glob("*.png"))[0]
    kept_time = kept.stat().st_mtime_ns
    data = victim.read_bytes()
    victim.unlink()
    assert run_cli(prepare_main, argv) == 0
    assert victim.read_bytes() == data and kept.stat().st_mtime_ns == kept_time  # missing pair made, others kept


def test_foreign_images_in_the_output_split_are_refused(synthetic_city, tmp_path, capsys):
    out = tmp_path / "ab"
    (out / "train").mkdir(parents=True)
    Image.new("RGB", (64, 32)).save(out / "train" / "mine.png")
    assert run_cli(prepare_main, _prepare_argv(synthetic_city, out, "--size", "32")) == 2
    err = capsys.readouterr().err
    assert "--output_dir" in err and "mine.png" in err and "--overwrite" in err and err.count("\n") == 1
    assert run_cli(prepare_main, _prepare_argv(synthetic_city, out, "--size", "32", "--overwrite")) == 0
    assert "train/mine.png" not in _images(out)


def test_an_interrupted_preparation_is_refused_by_the_dataset_and_the_advice_finishes_it(synthetic_city, tmp_path,
                                                                                         monkeypatch, capsys):
    out = tmp_path / "ab"
    real = cityscapes_module._convert
    calls = []

    def die_after_three(job):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(job)
        real(job)

    monkeypatch.setattr(cityscapes_module, "_convert", die_after_three)
    with pytest.raises(KeyboardInterrupt):
        prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", out, size=32)
    monkeypatch.setattr(cityscapes_module, "_convert", real)
    assert len(list((out / "train").glob("*.png"))) == 3
    assert json.loads((out / MANIFEST_NAME).read_text())["parts"]["train"]["complete"] is False
    with pytest.raises(DatasetError) as exc:
        AlignedDataset(out, "train", load_size=32, crop_size=32)
    message = str(exc.value)
    assert "incomplete" in message and str(out / "train") in message
    command = shlex.split(message.split("running the same command again: ")[1])
    assert command[:2] == ["python", "datasets/prepare_cityscapes_dataset.py"]
    assert run_cli(prepare_main, command[2:]) == 0  # the advice, followed as written
    assert len(AlignedDataset(out, "train", load_size=32, crop_size=32)) == 8
    assert len(AlignedDataset(out, "val", load_size=32, crop_size=32)) == 4


def test_the_dataset_warns_about_images_its_manifest_does_not_list(ab_root, tmp_path, capsys):
    root = tmp_path / "ab"
    shutil.copytree(ab_root, root)
    shutil.copy(sorted((root / "train").glob("*.png"))[0], root / "train" / "extra.png")
    assert len(AlignedDataset(root, "train", load_size=64, crop_size=64)) == 9
    err = capsys.readouterr().err
    assert err.startswith("warning:") and "extra.png" in err and MANIFEST_NAME in err


def test_synthetic_city_rerun_with_another_seed_is_refused_then_replaced_cleanly(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "city"), "--train", "2", "--val", "1", "--width", "32", "--height", "16",
            "--quiet"]
    assert run_cli(synthetic_main, argv + ["--seed", "0"]) == 0
    assert run_cli(synthetic_main, argv + ["--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--seed 0 (now 1)" in err and "--overwrite" in err
    assert run_cli(synthetic_main, argv + ["--seed", "1", "--overwrite"]) == 0
    make_synthetic_cityscapes(tmp_path / "fresh", 2, 1, seed=1, width=32, height=16)
    city, fresh = tmp_path / "city", tmp_path / "fresh"
    assert _images(city) == _images(fresh)
    assert all((city / p).read_bytes() == (fresh / p).read_bytes() for p in _images(city))
    assert run_cli(synthetic_main, argv + ["--seed", "1"]) == 0  # the same settings again: fine, same files


def test_prepare_refuses_a_synthetic_city_whose_writer_was_interrupted(tmp_path, monkeypatch):
    from pix2pix_tr.data import synthetic_city as city_module

    real = city_module.atomic_write_bytes
    count = []

    def die(path, data):
        if len(count) == 4:
            raise KeyboardInterrupt
        count.append(path)
        real(path, data)

    monkeypatch.setattr(city_module, "atomic_write_bytes", die)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_cityscapes(tmp_path / "city", 3, 1, width=32, height=16)
    monkeypatch.setattr(city_module, "atomic_write_bytes", real)
    with pytest.raises(DatasetError, match=r"incomplete.*make_synthetic_cityscapes.py --out"):
        prepare_cityscapes(tmp_path / "city" / "gtFine", tmp_path / "city" / "leftImg8bit", tmp_path / "ab", size=16)


def test_combine_rerun_with_other_settings_is_refused_then_replaced_cleanly(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for side in ("A", "B"):
        for k in range(3):
            (tmp_path / side / "train").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / side / "train" / f"{k}.png")
    argv = ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--fold_AB", str(tmp_path / "AB")]
    assert run_cli(combine_main, argv) == 0
    assert run_cli(combine_main, argv) == 0  # the same settings: written again
    assert run_cli(combine_main, argv + ["--format", "jpg", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert "--fold_AB" in err and "--format png (now jpg)" in err and "--overwrite" in err
    assert run_cli(combine_main, argv + ["--format", "jpg", "--limit", "1", "--overwrite"]) == 0
    assert _images(tmp_path / "AB") == ["train/0.jpg"]  # no stale png beside it
