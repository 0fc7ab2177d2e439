"""Reading images (issue 21, #4 and #5): one function for every image we read, EXIF orientation applied, 16-bit
files scaled by one fixed rule, label ids never scaled, ordinary 8-bit files exactly PIL's pixels."""

from __future__ import annotations

import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pix2pix_tr.data import AlignedDataset, DatasetError, prepare_cityscapes
from pix2pix_tr.io import read_image, read_image_size, read_label_ids, sixteen_to_eight

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def _with_orientation(path, orientation: int, pixels=PIXELS, **save):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **save)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_late_exif(path, orientation: int):
    """A PNG whose eXIf chunk comes after the image data (allowed by the PNG specification)."""
    plain = path.with_name("plain.png")
    Image.fromarray(PIXELS).save(plain)
    data = plain.read_bytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + _chunk(b"eXIf", exif.tobytes()[6:]) + data[end:])
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "1"])
@pytest.mark.parametrize("ext", ["png", "bmp", "webp", "jpg"])
def test_ordinary_8bit_files_decode_exactly_as_pil(tmp_path, mode, ext):
    if ext == "jpg" and mode in ("P", "RGBA", "LA"):
        pytest.skip("JPEG holds no palette or alpha")
    if ext == "bmp" and mode == "LA":
        pytest.skip("BMP holds no grey + alpha")
    img = Image.fromarray(PIXELS).convert(mode)
    path = tmp_path / f"x.{ext}"
    img.save(path, **({"lossless": True} if ext == "webp" else {}))
    with Image.open(path) as ref:
        want = np.asarray(ref if ref.mode in ("RGB", "L") else ref.convert("RGB"))
    got = read_image(path)
    assert got.mode in ("RGB", "L") and np.array_equal(np.asarray(got), want)
    assert read_image_size(path) == (10, 6)


@pytest.mark.parametrize("ext", ["png", "jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_pixels_and_sizes(tmp_path, ext, orientation):
    path = _with_orientation(tmp_path / f"o.{ext}", orientation, **({"quality": 95} if ext == "jpg" else {}))
    with Image.open(path) as img:
        shown = np.asarray(ImageOps.exif_transpose(img))
    got = np.asarray(read_image(path))
    assert np.array_equal(got, shown)
    assert read_image_size(path) == (shown.shape[1], shown.shape[0])
    if orientation in (5, 6, 7, 8):
        assert got.shape[:2] == (10, 6)  # stored 10 wide and 6 high, displayed on its side


def test_a_png_with_its_exif_after_the_image_data_is_read_the_same_way(tmp_path):
    path = _png_with_late_exif(tmp_path / "late.png", 6)
    got = read_image(path)
    assert np.array_equal(np.asarray(got), np.rot90(PIXELS, -1))  # 6 = "rotate 90 clockwise to display"
    assert read_image_size(path) == got.size == (6, 10)


def test_sixteen_bit_files_use_one_fixed_scale_not_their_maximum(tmp_path):
    flat = np.full((4, 4), 200, np.uint16)
    bright = flat.copy()
    bright[0, 0] = 65535
    Image.fromarray(flat).save(tmp_path / "flat.png")
    Image.fromarray(bright).save(tmp_path / "bright.png")
    a, b = np.asarray(read_image(tmp_path / "flat.png")), np.asarray(read_image(tmp_path / "bright.png"))
    assert a[1, 1] == b[1, 1] == 1 and b[0, 0] == 255  # 200 / 257 rounds to 1 in both files
    assert np.array_equal(sixteen_to_eight(np.arange(256) * 257), np.arange(256))  # 8-bit values widened: exact
    # a 16-bit colour PNG (PIL alone keeps only the high byte) is scaled by the same rule, channel by channel
    colour = np.zeros((3, 5, 3), np.uint16)
    colour[..., 0], colour[..., 1], colour[..., 2] = 65535, 77 * 257, 200  # BGR for OpenCV
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    assert read_image(tmp_path / "colour.png").mode == "RGB"
    assert np.asarray(read_image(tmp_path / "colour.png"))[0, 0].tolist() == [1, 77, 255]
    # grey and colour 16-bit files holding the same values decode to the same 8-bit values
    grey = np.asarray(read_image(tmp_path / "flat.png").convert("RGB"))
    cv2.imwrite(str(tmp_path / "grey3.png"), np.full((4, 4, 3), 200, np.uint16))
    assert np.array_equal(np.asarray(read_image(tmp_path / "grey3.png")), grey)


def test_label_ids_are_values_never_scaled(tmp_path):
    ids = RNG.integers(0, 34, (6, 10)).astype(np.uint16)
    Image.fromarray(ids).save(tmp_path / "ids16.png")
    Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "ids8.png")
    Image.fromarray(ids.astype(np.uint8)).convert("P").save(tmp_path / "idsP.png")
    for name in ("ids16.png", "ids8.png", "idsP.png"):
        assert np.array_equal(read_label_ids(tmp_path / name), ids), name
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(ids).save(tmp_path / "turned.png", exif=exif.tobytes())
    assert np.array_equal(read_label_ids(tmp_path / "turned.png"), np.rot90(ids))  # 8 = rotate 90 anticlockwise
    Image.fromarray(PIXELS).save(tmp_path / "colour.png")
    with pytest.raises(DatasetError, match=r"colour.png is a RGB image, not a label-id map"):
        read_label_ids(tmp_path / "colour.png", error=DatasetError)


def test_cityscapes_labelids_in_16_bit_give_the_same_pairs_as_8_bit(synthetic_city, tmp_path):
    gt16 = tmp_path / "gtFine"
    shutil.copytree(synthetic_city / "gtFine" / "val", gt16 / "val", ignore=shutil.ignore_patterns("*_color.png"))
    for path in (gt16 / "val").rglob("*_labelIds.png"):
        Image.fromarray(np.asarray(Image.open(path)).astype(np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
    gt8 = tmp_path / "gtFine8"
    shutil.copytree(synthetic_city / "gtFine" / "val", gt8 / "val", ignore=shutil.ignore_patterns("*_color.png"))
    a = prepare_cityscapes(gt16, synthetic_city / "leftImg8bit", tmp_path / "ab16", size=32, splits=["val"])
    prepare_cityscapes(gt8, synthetic_city / "leftImg8bit", tmp_path / "ab8", size=32, splits=["val"])
    for stem in a["val"]:
        assert (tmp_path / "ab16" / "val" / f"{stem}.png").read_bytes() == (tmp_path / "ab8" / "val" / f"{stem}.png").read_bytes()


def test_the_dataset_reads_an_exif_rotated_pair_upright(tmp_path):
    (tmp_path / "train").mkdir()
    stored = RNG.integers(0, 256, (16, 8, 3), dtype=np.uint8)  # stored 8 wide, 16 high; displayed 16 x 8
    _with_orientation(tmp_path / "train" / "p.png", 6, stored)
    ds = AlignedDataset(tmp_path, "train", preprocess="none", load_size=8, crop_size=8, no_flip=True)
    item = ds[0]
    shown = np.rot90(stored, -1)  # (8, 16, 3): A is its left half
    assert item["A"].shape == (3, 8, 8)
    assert np.array_equal(((item["A"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(), shown[:, :8])


def test_combine_stores_what_a_viewer_displays(tmp_path, capsys):
    from pix2pix_tr.data.cli import combine_main, run_cli

    for side in ("A", "B"):
        (tmp_path / side).mkdir()
    stored = RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8)  # a phone photo stored 6 wide, shown 8 wide
    _with_orientation(tmp_path / "A" / "1.png", 6, stored)
    label = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "B" / "1.png")
    assert run_cli(combine_main, ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"),
                                  "--fold_AB", str(tmp_path / "AB")]) == 0
    ab = np.asarray(Image.open(tmp_path / "AB" / "1.png"))
    assert np.array_equal(ab[:, :8], np.rot90(stored, -1)) and np.array_equal(ab[:, 8:], label)


def test_combine_copies_16_bit_label_ids_only_when_told_and_refuses_the_ambiguous_file(tmp_path, capsys):
    from pix2pix_tr.data.cli import combine_main, run_cli

    for side in ("A", "B"):
        (tmp_path / side).mkdir()
    Image.fromarray(PIXELS).save(tmp_path / "A" / "1.png")
    ids = RNG.integers(1, 34, (6, 10)).astype(np.uint16)
    Image.fromarray(ids).save(tmp_path / "B" / "1.png")
    argv = ["--fold_A", str(tmp_path / "A"), "--fold_B", str(tmp_path / "B"), "--size", "8"]
    assert run_cli(combine_main, argv + ["--fold_AB", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "B/1.png" in err and "--b_label_ids" in err and err.count("\n") == 1
    assert not (tmp_path / "plain" / "1.png").exists()
    assert run_cli(combine_main, argv + ["--fold_AB", str(tmp_path / "ids"), "--b_label_ids"]) == 0
    b = np.asarray(Image.open(tmp_path / "ids" / "1.png"))[:, 8:]
    want = np.asarray(Image.fromarray(ids.astype(np.uint8)).resize((8, 8), Image.NEAREST))
    assert np.array_equal(b[..., 0], want) and np.array_equal(b[..., 2], want)  # the ids, nearest, as grey
