"""``test.py --dataset_mode single``: plain label maps give the same images as the same maps inside A|B pairs, every
label format is read as in training, and the wrong kind of input is refused with advice that works."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix_tr import Translator
from pix2pix_tr.cityscapes_labels import color_to_id, ids_to_train_ids
from pix2pix_tr.inference import main
from test_inference import NAME, _halves, make_run
from test_report_training import assert_links_resolve, parse_page

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ab_root):
    """A run (unet_64, ngf 8, BtoA, crop 64) and a folder of the val split's colour label maps as plain files."""
    base = tmp_path_factory.mktemp("single")
    make_run(base / "checkpoints")
    labels = base / "labels"
    labels.mkdir()
    for p in sorted((ab_root / "val").glob("*.png")):
        Image.fromarray(np.ascontiguousarray(_halves(ab_root, p.stem)[0])).save(labels / p.name)
    return base, labels


def _args(base, dataroot, results, *extra):
    return ["--dataroot", str(dataroot), "--name", NAME, "--checkpoints_dir", str(base / "checkpoints"),
            "--results_dir", str(results), *extra]


def _images(run_dir: Path, visual="fake_B"):
    return {p.name[: -len(f"_{visual}.png")]: np.asarray(Image.open(p))
            for p in sorted((run_dir / "images").glob(f"*_{visual}.png"))}


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "test.py: error: " in line]
    assert len(err) == 1, err
    return err[0].split("test.py: error: ", 1)[1]


@pytest.mark.parametrize("extra", [["--eval"], [], ["--no_dropout"], ["--eval", "--batch_size", "3"]],
                         ids=["eval", "train_dropout", "train_batch_stats", "eval_batch3"])
def test_plain_label_maps_equal_the_same_maps_in_pairs(setup, ab_root, tmp_path, extra):
    """The issue's done-when: single mode, and the Translator, give bit for bit test.py's fake_B of the pairs."""
    base, labels = setup
    assert main(_args(base, ab_root, tmp_path / "aligned", *extra)) == 0
    assert main(_args(base, labels, tmp_path / "single", "--dataset_mode", "single", *extra)) == 0
    aligned, single = tmp_path / "aligned" / NAME / "val_latest", tmp_path / "single" / NAME / "single_latest"
    expected, got = _images(aligned), _images(single)
    assert sorted(got) == sorted(expected) and len(got) == 4
    for stem in expected:
        np.testing.assert_array_equal(got[stem], expected[stem])
        np.testing.assert_array_equal(_images(single, "real_A")[stem], _images(aligned, "real_A")[stem])
    assert not list((single / "images").glob("*_real_B.png"))
    res = json.loads((single / "results.json").read_text())
    assert res["status"] == "complete" and res["dataset_mode"] == "single" and res["phase"] == "single"
    assert res["visuals"] == {"real_A": "images/{stem}_real_A.png", "fake_B": "images/{stem}_fake_B.png"}
    # the gallery: one input/output pair per row, every link resolves
    assert_links_resolve(single / "index.html")
    imgs = [link for tag, link in parse_page(single / "index.html").links if tag == "img"]
    assert imgs == [f"images/{s}_{v}.png" for s in res["stems"] for v in ("real_A", "fake_B")]
    if "--no_dropout" in extra or "--eval" in extra:  # the Translator too (its dropout stream is its own)
        translator = Translator.from_run(base / "checkpoints" / NAME, eval="--eval" in extra,
                                         no_dropout="--no_dropout" in extra or None)
        batch = 3 if "3" in extra else 1
        outs = translator.translate([Image.open(labels / f"{s}.png") for s in res["stems"]], batch_size=batch)
        for stem, out in zip(res["stems"], outs):
            np.testing.assert_array_equal(np.asarray(out), expected[stem])


def test_label_ids_and_train_ids_are_coloured_as_in_training(setup, tmp_path):
    base, labels = setup
    ids_dir, train_dir, wide_dir = tmp_path / "ids", tmp_path / "train_ids", tmp_path / "ids16"
    for d in (ids_dir, train_dir, wide_dir):
        d.mkdir()
    for p in sorted(labels.glob("*.png")):
        ids = color_to_id(np.asarray(Image.open(p).convert("RGB")))
        Image.fromarray(ids, "L").save(ids_dir / p.name)
        Image.fromarray(ids_to_train_ids(ids), "L").save(train_dir / p.name)
        Image.fromarray(ids.astype(np.uint16)).save(wide_dir / p.name)  # a 16-bit PNG of ids
    assert main(_args(base, labels, tmp_path / "colour", "--dataset_mode", "single", "--eval")) == 0
    expected = _images(tmp_path / "colour" / NAME / "single_latest")
    for folder in (ids_dir, train_dir, wide_dir):
        # train ids without an ignored (255) pixel read as label ids too: the run is told which (see below)
        flag = ["--label_format", "train_ids"] if folder == train_dir else []
        assert main(_args(base, folder, tmp_path / f"res_{folder.name}", "--model", "test", "--eval", *flag)) == 0
        got = _images(tmp_path / f"res_{folder.name}" / NAME / "single_latest")
        for stem in expected:
            np.testing.assert_array_equal(got[stem], expected[stem], err_msg=f"{folder.name} {stem}")


def test_an_ambiguous_map_names_the_flag_and_the_flag_works(setup, tmp_path, capsys):
    base, _ = setup
    folder = tmp_path / "maps"
    folder.mkdir()
    values = np.zeros((64, 64), np.uint8)
    values[:32], values[32:, :20] = 2, 13  # values 0..18 only: label ids or train ids?
    Image.fromarray(values, "L").save(folder / "m.png")
    assert main(_args(base, folder, tmp_path / "r", "--dataset_mode", "single")) == 2
    msg = _one_error(capsys)
    assert "read both as Cityscapes label ids and as train ids: pass --label_format label_ids or --label_format " \
           "train_ids" in msg, msg
    assert not (tmp_path / "r").exists()  # refused before anything was written
    assert main(_args(base, folder, tmp_path / "r", "--dataset_mode", "single", "--label_format", "train_ids")) == 0
    real_A = _images(tmp_path / "r" / NAME / "single_latest", "real_A")["m"]
    assert tuple(real_A[0, 0]) == (70, 70, 70) and tuple(real_A[-1, 0]) == (0, 0, 142)  # building, car
    # with an ignored region (255) the values are train ids; with one id above 18 (sky 23) they are label ids
    from pix2pix_tr.data.single import read_input_image

    values[:4, :4] = 255
    image, kind = read_input_image(values)
    assert kind == "train_ids" and np.asarray(image)[0, 0].tolist() == [0, 0, 0]
    values[:4, :4] = 23
    image, kind = read_input_image(values)
    assert kind == "label_ids" and np.asarray(image)[0, 0].tolist() == [70, 130, 180]


def test_a_list_of_paths_one_file_and_the_official_spelling(setup, tmp_path, capsys):
    base, labels = setup
    files = sorted(labels.glob("*.png"))
    listing = tmp_path / "inputs.txt"
    shutil.copy(files[2], tmp_path / "beside.png")  # relative paths are read from the list's folder
    listing.write_text(f"# two maps\n{files[0]}\n\nbeside.png\n")
    assert main(_args(base, listing, tmp_path / "a", "--model", "test", "--eval")) == 0
    assert sorted(_images(tmp_path / "a" / NAME / "single_latest")) == sorted([files[0].stem, "beside"])
    assert main(_args(base, files[1], tmp_path / "b", "--model", "test", "--eval")) == 0
    assert sorted(_images(tmp_path / "b" / NAME / "single_latest")) == [files[1].stem]
    listing.write_text("missing.png\n")
    assert main(_args(base, listing, tmp_path / "c", "--model", "test")) == 2
    assert "inputs.txt line 1:" in _one_error(capsys)
    assert main(_args(base, labels, tmp_path / "c", "--model", "test", "--dataset_mode", "aligned")) == 2
    assert "--model test reads single images: drop --dataset_mode aligned" in _one_error(capsys)


def test_pairs_given_to_single_mode_are_refused_and_the_advice_works(setup, ab_root, tmp_path, capsys):
    base, _ = setup
    assert main(_args(base, ab_root / "val", tmp_path / "r", "--dataset_mode", "single")) == 2
    msg = _one_error(capsys)
    assert "looks like an A|B pair, not a single image (its left half is a photo and its right half a colour label " \
           "map)" in msg, msg
    advice = msg.split("run test.py with ", 1)[1].split(" (")[0].split()
    assert advice == ["--dataset_mode", "aligned", "--dataroot", str(ab_root), "--phase", "val"]
    assert main(["--name", NAME, "--checkpoints_dir", str(base / "checkpoints"), "--results_dir", str(tmp_path / "r"),
                 *advice]) == 0


@pytest.mark.parametrize("extra", [[], ["--preprocess", "scale_width_and_crop"]], ids=["default", "issue_trap"])
def test_single_maps_given_to_aligned_mode_are_refused_and_the_advice_works(setup, tmp_path, capsys, extra):
    """The issue's trap: test.py used to suggest --preprocess scale_width_and_crop, which then translated only the
    right half of each map, with exit 0."""
    base, labels = setup
    data = tmp_path / "data"
    shutil.copytree(labels, data / "val")
    assert main(_args(base, data, tmp_path / "r", *extra)) == 2
    msg = _one_error(capsys)
    assert "looks like a single image, not an A|B pair (the whole image is one colour label map" in msg, msg
    assert "scale_width" not in msg
    advice = msg.split("run test.py with ", 1)[1].split(" (")[0].split()
    assert advice == ["--dataset_mode", "single", "--dataroot", str(data / "val")]
    assert not (tmp_path / "r").exists()
    assert main(_args(base, data, tmp_path / "r", *advice[:2]) + advice[2:]) == 0
    assert len(_images(tmp_path / "r" / NAME / "single_latest")) == 4


def test_wide_label_maps_and_photos_are_told_apart(setup, synthetic_city, tmp_path, capsys):
    """Cityscapes frames are 2:1, the shape of an A|B pair of square halves: content decides, not the shape."""
    base, _ = setup
    colour = tmp_path / "colour" / "val"
    colour.mkdir(parents=True)
    for p in sorted((synthetic_city / "gtFine" / "val").rglob("*_gtFine_color.png")):
        shutil.copy(p, colour / p.name)
    assert main(_args(base, colour.parent, tmp_path / "r")) == 2  # 128x64 colour maps are not pairs
    assert "the whole image is one colour label map" in _one_error(capsys)
    assert main(_args(base, colour, tmp_path / "r", "--model", "test")) == 0  # single mode takes them
    photos = sorted((synthetic_city / "leftImg8bit" / "val").rglob("*.png"))
    assert main(_args(base, photos[0].parent, tmp_path / "p", "--model", "test")) == 0  # a 2:1 photo is one image


def test_non_square_files_in_aligned_mode_never_get_the_crop_advice(setup, synthetic_city, tmp_path, capsys):
    base, _ = setup
    data = tmp_path / "data" / "val"
    data.mkdir(parents=True)
    for p in sorted((synthetic_city / "leftImg8bit" / "val").rglob("*.png")):
        Image.open(p).crop((0, 0, 96, 64)).save(data / p.name)  # 3:2 photos: neither pairs nor label maps
    assert main(_args(base, data.parent, tmp_path / "r")) == 2
    msg = _one_error(capsys)
    assert "not an A|B pair of two square halves side by side" in msg and "--dataset_mode single" in msg, msg
    assert "scale_width" not in msg


def test_a_mixed_folder_stops_at_the_first_misfit(setup, ab_root, tmp_path, capsys):
    base, labels = setup
    folder = tmp_path / "mixed"
    folder.mkdir()
    maps = sorted(labels.glob("*.png"))
    for i, p in enumerate(maps):
        shutil.copy(p, folder / f"{i}_{p.name}")
    shutil.copy(sorted((ab_root / "val").glob("*.png"))[0], folder / "0b_pair.png")  # second: not first, middle or last
    assert main(_args(base, folder, tmp_path / "r", "--model", "test")) == 2
    assert "0b_pair.png looks like an A|B pair" in _one_error(capsys)
    res = json.loads((tmp_path / "r" / NAME / "single_latest" / "results.json").read_text())
    assert res["status"] == "incomplete"


def test_inputs_inside_the_results_folder_are_refused(setup, tmp_path, capsys):
    base, labels = setup
    run_dir = tmp_path / "r" / NAME / "single_latest"
    shutil.copytree(labels, run_dir / "images")
    assert main(_args(base, run_dir / "images", tmp_path / "r", "--model", "test")) == 2
    assert "is inside the results folder" in _one_error(capsys)
    assert len(list((run_dir / "images").glob("*.png"))) == 4  # nothing removed


def test_the_module_entry_point_takes_the_same_flags(setup, tmp_path):
    base, labels = setup
    proc = subprocess.run([sys.executable, "-m", "pix2pix_tr.inference", *_args(base, labels, tmp_path / "r",
                                                                                "--dataset_mode", "single")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 4 input/output pairs" in proc.stdout
    assert 'pix2pix-tr-test = "pix2pix_tr.inference:main"' in (REPO / "pyproject.toml").read_text()
