"""Cityscapes preparation (round trip on the tiny city), combine_A_and_B, resolve_dataroot, and their errors."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix_tr.data import DatasetError, prepare_cityscapes, resolve_dataroot
from pix2pix_tr.cityscapes_labels import TRAIN_PALETTE, color_to_id, ids_to_color
from pix2pix_tr.data.cli import combine_main, prepare_main, run_cli
from pix2pix_tr.data.combine import combine_A_and_B
from pix2pix_tr.data.manifest import MANIFEST_NAME

REPO = Path(__file__).resolve().parents[1]


def _photo_and_ids(city, split, stem):
    c = stem.split("_")[0]
    photo = Image.open(city / "leftImg8bit" / split / c / f"{stem}_leftImg8bit.png").convert("RGB")
    ids = np.asarray(Image.open(city / "gtFine" / split / c / f"{stem}_gtFine_labelIds.png"))
    return photo, ids


def test_round_trip_keeps_names_sizes_and_sides(synthetic_city, ab_root):
    for split, n in (("train", 8), ("val", 4)):
        files = sorted((ab_root / split).glob("*.png"))
        expected = sorted(p.name[: -len("_leftImg8bit.png")] + ".png"
                          for p in (synthetic_city / "leftImg8bit" / split).rglob("*_leftImg8bit.png"))
        assert [f.name for f in files] == expected and len(files) == n
        for f in files:
            ab = np.asarray(Image.open(f).convert("RGB"))
            assert ab.shape == (64, 128, 3)
            photo, ids = _photo_and_ids(synthetic_city, split, f.stem)
            # left = the photo (bicubic), right = the colour label (nearest): exact palette colours
            np.testing.assert_array_equal(ab[:, :64], np.asarray(photo.resize((64, 64), Image.BICUBIC)))
            nearest = np.asarray(Image.fromarray(ids).resize((64, 64), Image.NEAREST))
            np.testing.assert_array_equal(ab[:, 64:], ids_to_color(nearest))
            np.testing.assert_array_equal(color_to_id(ab[:, 64:]), np.where(nearest <= 4, 0, nearest))


def test_original_mode_blends_labels_and_writes_jpeg(synthetic_city, tmp_path, capsys):
    out = tmp_path / "orig"
    assert run_cli(prepare_main, ["--gtFine_dir", str(synthetic_city / "gtFine"), "--leftImg8bit_dir",
                                  str(synthetic_city / "leftImg8bit"), "--output_dir", str(out), "--size", "32",
                                  "--original", "--limit", "2", "--workers", "2", "--quiet"]) == 0
    assert "wrote 2 train, 2 val A|B pairs (64x32" in capsys.readouterr().out
    files = sorted(out.rglob("*"))
    assert [f.suffix for f in files if f.is_file() and f.name != MANIFEST_NAME] == [".jpg"] * 4
    label_side = np.asarray(Image.open(sorted((out / "train").glob("*.jpg"))[0]))[:, 32:].reshape(-1, 3)
    palette = {tuple(c) for c in ids_to_color(np.arange(34))}
    off_palette = np.mean([tuple(c) not in palette for c in label_side])
    assert off_palette > 0.2  # bicubic + JPEG: many blended colours, as the original pix2pix data


def test_labelids_are_used_when_colour_files_are_missing(synthetic_city, tmp_path):
    gt = tmp_path / "gtFine"
    shutil.copytree(synthetic_city / "gtFine", gt, ignore=shutil.ignore_patterns("*_gtFine_color.png"))
    out = tmp_path / "ab"
    written = prepare_cityscapes(gt, synthetic_city / "leftImg8bit", out, size=32, splits=["val"])
    assert len(written["val"]) == 4 and not (out / "train").exists()
    right = np.asarray(Image.open(out / "val" / f"{written['val'][0]}.png"))[:, 32:]
    assert {tuple(c) for c in right.reshape(-1, 3)} <= {tuple(c) for c in ids_to_color(np.arange(34))}


def test_unmatched_and_missing_inputs_are_named(synthetic_city, tmp_path):
    photos = tmp_path / "leftImg8bit"
    shutil.copytree(synthetic_city / "leftImg8bit", photos)
    victims = sorted((photos / "train").rglob("*.png"))[:3]
    for v in victims:
        v.unlink()
    with pytest.raises(DatasetError) as exc:
        prepare_cityscapes(synthetic_city / "gtFine", photos, tmp_path / "out", size=32)
    msg = str(exc.value)
    assert "unmatched Cityscapes frames in train: 3 of 8 labels have no photo" in msg
    assert victims[0].name.replace("_leftImg8bit.png", "") in msg
    assert not (tmp_path / "out").exists()  # nothing is written before every pair is matched
    with pytest.raises(DatasetError, match=r"--gtFine_dir: the folder .*nope does not exist"):
        prepare_cityscapes(tmp_path / "nope", photos, tmp_path / "out")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(DatasetError, match=r"--leftImg8bit_dir: no \*_leftImg8bit.png files under"):
        prepare_cityscapes(synthetic_city / "gtFine", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DatasetError, match=r"--gtFine_dir: the folder .*gtFine/test does not exist; point --gtFine_dir at"):
        prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", tmp_path / "o", splits=["test"])


def test_many_unmatched_frames_are_summarised(synthetic_city, tmp_path):
    gt = tmp_path / "gtFine"
    shutil.copytree(synthetic_city / "gtFine", gt)
    for p in sorted((gt / "train").rglob("*.png")):
        p.unlink()
    (gt / "train" / "x").mkdir()
    Image.new("L", (8, 4)).save(gt / "train" / "x" / "zzz_000000_000019_gtFine_labelIds.png")
    with pytest.raises(DatasetError) as exc:
        prepare_cityscapes(gt, synthetic_city / "leftImg8bit", tmp_path / "out", size=32)
    assert "8 of 8 photos have no label (" in str(exc.value) and "and 3 more" in str(exc.value)
    assert "1 of 1 labels have no photo (zzz_000000_000019)" in str(exc.value)


def test_prepare_cli_prints_one_sentence_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "datasets" / "prepare_cityscapes_dataset.py"), "--gtFine_dir",
                           str(tmp_path / "missing"), "--leftImg8bit_dir", str(tmp_path), "--output_dir",
                           str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --gtFine_dir: the folder") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_combine_A_and_B(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(2):
            a, b = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
            (tmp_path / "A" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "B" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(tmp_path / "A" / split / f"{k}.png")
            Image.fromarray(b).save(tmp_path / "B" / split / f"{k}.bmp")  # extensions may differ
    assert run_cli(combine_main, ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--fold_AB",
                                  str(tmp_path / "AB")]) == 0
    assert "wrote 4 A|B images" in capsys.readouterr().out
    ab = np.asarray(Image.open(tmp_path / "AB" / "val" / "1.png"))
    np.testing.assert_array_equal(ab[:, :16], np.asarray(Image.open(tmp_path / "A" / "val" / "1.png")))
    np.testing.assert_array_equal(ab[:, 16:], np.asarray(Image.open(tmp_path / "B" / "val" / "1.bmp")))
    assert combine_A_and_B(tmp_path / "A", tmp_path / "B", tmp_path / "AB8", size=8, limit=1) == ["train/0"]
    assert Image.open(tmp_path / "AB8" / "train" / "0.png").size == (16, 8)

    Image.new("RGB", (20, 16)).save(tmp_path / "B" / "train" / "0.bmp")
    with pytest.raises(DatasetError, match=r"A/train/0.png is 16x16 but .*B/train/0.bmp is 20x16: pass --size N"):
        combine_A_and_B(tmp_path / "A", tmp_path / "B", tmp_path / "AB2")
    (tmp_path / "B" / "val" / "1.bmp").unlink()
    assert run_cli(combine_main, ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--fold_AB",
                                  str(tmp_path / "AB3")]) == 2
    err = capsys.readouterr().err
    assert err == ("error: 1 of 4 images in --fold_A have no partner in --fold_B (val/1): give both folders the "
                   "same file names\n")
    with pytest.raises(DatasetError, match=r"the --fold_A folder .*nowhere does not exist"):
        combine_A_and_B(tmp_path / "nowhere", tmp_path / "B", tmp_path / "AB4")


def test_resolve_dataroot(tmp_path, monkeypatch, ab_root):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as exc:
        resolve_dataroot("cityscapes")
    msg = str(exc.value)
    assert "neither ./cityscapes nor ./datasets/cityscapes exists" in msg
    assert "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip" in msg
    assert "datasets/make_synthetic_cityscapes.py" in msg and "prepare_cityscapes_dataset.py" in msg
    (tmp_path / "datasets" / "cityscapes" / "train").mkdir(parents=True)
    assert resolve_dataroot("cityscapes") == Path("datasets") / "cityscapes"
    (tmp_path / "cityscapes" / "train").mkdir(parents=True)
    assert resolve_dataroot("cityscapes") == Path("cityscapes")  # ./cityscapes wins
    assert resolve_dataroot(ab_root) == ab_root
    with pytest.raises(DatasetError, match=r"--dataroot .*elsewhere does not exist"):
        resolve_dataroot(tmp_path / "elsewhere")
    raw = tmp_path / "raw"
    (raw / "gtFine").mkdir(parents=True)
    (raw / "leftImg8bit").mkdir()
    with pytest.raises(DatasetError, match=r"is a raw Cityscapes folder .* run python datasets/prepare_cityscapes"):
        resolve_dataroot(raw)


@pytest.mark.parametrize("kwargs,message", [
    (dict(size=4), "--size must be at least 8 pixels, got 4"),
    (dict(label_resize="area"), "--label_resize must be nearest or bicubic, got 'area'"),
    (dict(image_format="tif"), "--format must be png or jpg, got 'tif'"),
    (dict(limit=0), "--limit must be >= 1, got 0"),
    (dict(workers=0), "--workers must be >= 1, got 0"),
])
def test_prepare_argument_errors(synthetic_city, tmp_path, kwargs, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", tmp_path / "o", **kwargs)


def test_cli_argument_errors_exit_2(synthetic_city, tmp_path, capsys):
    base = ["--gtFine_dir", str(synthetic_city / "gtFine"), "--leftImg8bit_dir", str(synthetic_city / "leftImg8bit"),
            "--output_dir", str(tmp_path / "o")]
    for main, argv, message in (
            (prepare_main, base + ["--limit", "0"], "--limit must be >= 1"),
            (prepare_main, base + ["--workers", "0"], "--workers must be >= 1"),
            (prepare_main, base + ["--size", "x"], "--size: expected a whole number, got 'x'"),
            (combine_main, ["--fold_A", "a", "--fold_B", "b", "--fold_AB", "c", "--size", "0"],
             "--size and --limit must be >= 1")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_combine_argument_errors(tmp_path):
    for sub in ("A", "B"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / sub / "1.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "A" / "1.jpg")
    for kwargs, message in ((dict(b_resize="area"), "--b_resize must be bicubic or nearest, got 'area'"),
                            (dict(image_format="gif"), "--format must be png or jpg, got 'gif'"),
                            (dict(size=0), "--size must be >= 1, got 0"), (dict(limit=0), "--limit must be >= 1"),
                            (dict(), r"--fold_A: both .*1.jpg and .*1.png have the name 1; keep one of them")):
        with pytest.raises(DatasetError, match=message):
            combine_A_and_B(tmp_path / "A", tmp_path / "B", tmp_path / "AB", **kwargs)


def test_rgba_colour_files_and_stale_other_format(synthetic_city, tmp_path):
    gt = tmp_path / "gtFine"
    shutil.copytree(synthetic_city / "gtFine" / "val", gt / "val")
    for p in (gt / "val").rglob("*_gtFine_color.png"):  # the official colour files are RGBA
        Image.open(p).convert("RGBA").save(p)
    out = tmp_path / "ab"
    written = prepare_cityscapes(gt, synthetic_city / "leftImg8bit", out, size=32, splits=["val"])
    stem = written["val"][0]
    ids = np.asarray(Image.open(next((gt / "val").rglob(f"{stem}_gtFine_labelIds.png"))))
    right = np.asarray(Image.open(out / "val" / f"{stem}.png"))[:, 32:]
    np.testing.assert_array_equal(right, ids_to_color(np.asarray(Image.fromarray(ids).resize((32, 32), 0))))
    with pytest.raises(DatasetError, match=r"--output_dir .*--format png \(now jpg\).*--overwrite"):
        prepare_cityscapes(gt, synthetic_city / "leftImg8bit", out, size=32, splits=["val"], image_format="jpg")
