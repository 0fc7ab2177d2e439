"""AlignedDataset: shared geometric transforms, per-sample randomness, preprocess modes, bad input messages."""

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.data import AlignedDataset, DatasetError, list_images

MODES = {  # preprocess -> (kwargs, expected output size (h, w) for 36x36 halves)
    "resize_and_crop": (dict(load_size=40, crop_size=32), (32, 32)),
    "crop": (dict(crop_size=24), (24, 24)),
    "scale_width": (dict(load_size=30, crop_size=30), (30, 30)),
    "scale_width_and_crop": (dict(load_size=44, crop_size=32), (32, 32)),
    "none": (dict(), (36, 36)),
}


def _coord_pattern(h, w, seed):
    """R = column, G = row, B = noise: any crop offset, flip or scale mismatch between halves shows up."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w)[None, :]
    img[..., 1] = np.linspace(0, 255, h)[:, None]
    img[..., 2] = rng.integers(0, 256, (h, w))
    return img


@pytest.fixture
def twin_root(tmp_path):
    """A|B files whose two halves are the same pattern (so A must equal B after any shared transform)."""
    root = _mk(tmp_path / "train")
    for k in range(6):
        half = _coord_pattern(36, 36, k)
        Image.fromarray(np.concatenate([half, half], 1)).save(root / f"{k}.png")
    return tmp_path


def _mk(path):
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("mode", sorted(MODES))
def test_both_halves_get_the_same_geometric_transform(twin_root, mode):
    kwargs, size = MODES[mode]
    ds = AlignedDataset(twin_root, "train", preprocess=mode, seed=3, **kwargs)
    flips, offsets = set(), set()
    for epoch in range(4):
        for i in range(len(ds)):
            item = ds[(epoch, i)]
            assert item["A"].shape == (3, *size) and item["A"].dtype == torch.float32
            torch.testing.assert_close(item["A"], item["B"], rtol=0, atol=0)
            assert -1 <= item["A"].min() and item["A"].max() <= 1
            red_row = item["A"][0, 0]
            flips.add(bool(red_row[-1] < red_row[0]))  # the column ramp runs backwards after a flip
            offsets.add((round(float(item["A"][0, 0, 0]), 3), round(float(item["A"][1, 0, 0]), 3)))
    assert flips == {True, False}  # the flip is really drawn ...
    if "crop" in mode:
        assert len(offsets) > 3  # ... and so is the crop position


def test_draw_depends_only_on_seed_epoch_index(twin_root):
    ds = AlignedDataset(twin_root, "train", load_size=40, crop_size=32, seed=7)
    again = AlignedDataset(twin_root, "train", load_size=40, crop_size=32, seed=7)
    other = AlignedDataset(twin_root, "train", load_size=40, crop_size=32, seed=8)
    for _ in range(3):
        ds[(1, 4)]  # drawing other samples first must not change anything
    torch.testing.assert_close(ds[(2, 3)]["A"], again[(2, 3)]["A"], rtol=0, atol=0)
    torch.testing.assert_close(ds[3]["A"], ds[(0, 3)]["A"], rtol=0, atol=0)  # a plain index is epoch 0
    per_epoch = [ds[(e, 3)]["A"] for e in range(6)]
    assert any(not torch.equal(per_epoch[0], a) for a in per_epoch[1:])
    assert any(not torch.equal(ds[(e, 3)]["A"], other[(e, 3)]["A"]) for e in range(6))


def test_direction_and_item_fields(tmp_path):
    left = _coord_pattern(32, 32, 0)
    right = 255 - left
    Image.fromarray(np.concatenate([left, right], 1)).save(_mk(tmp_path / "val" / "sub") / "frame_000001_000019.png")
    kw = dict(preprocess="none", no_flip=True)
    a2b = AlignedDataset(tmp_path, "val", direction="AtoB", **kw)[0]
    b2a = AlignedDataset(tmp_path, "val", direction="BtoA", **kw)[0]
    expect_left = torch.from_numpy(left).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(a2b["A"], expect_left)
    torch.testing.assert_close(b2a["B"], expect_left)  # BtoA: the model input A is the right half
    torch.testing.assert_close(b2a["A"], -expect_left)
    assert a2b["name"] == "frame_000001_000019"
    assert a2b["A_paths"] == a2b["B_paths"] == str(tmp_path / "val" / "sub" / "frame_000001_000019.png")


def test_prepared_city_loads_labels_to_photo(ab_root):
    ds = AlignedDataset(ab_root, "val", direction="BtoA", preprocess="none", no_flip=True)
    item = ds[0]
    assert len(ds) == 4 and item["A"].shape == (3, 64, 64)
    ab = np.asarray(Image.open(ds.paths[0]).convert("RGB"))
    np.testing.assert_allclose(((item["A"].permute(1, 2, 0).numpy() + 1) * 127.5).round(), ab[:, 64:], atol=0)


def test_grayscale_rgba_and_other_formats_become_rgb(tmp_path):
    root = _mk(tmp_path / "train")
    Image.new("L", (32, 16), 128).save(root / "a.png")
    Image.new("RGBA", (32, 16), (255, 0, 0, 255)).save(root / "b.webp", lossless=True)
    Image.new("RGB", (32, 16), (0, 255, 0)).save(root / "c.bmp")
    Image.new("RGB", (32, 16), (0, 0, 255)).save(root / "d.jpeg", quality=100)
    (root / "notes.txt").write_text("not an image")
    ds = AlignedDataset(root.parent, "train", preprocess="none")
    assert [p.name for p in ds.paths] == ["a.png", "b.webp", "c.bmp", "d.jpeg"]
    for i in range(4):
        assert ds[i]["A"].shape == (3, 16, 16) and ds[i]["B"].shape == (3, 16, 16)
    assert torch.allclose(ds[1]["A"][0], torch.ones(16, 16))
    one_channel = AlignedDataset(root.parent, "train", preprocess="none", input_nc=1)
    assert one_channel[2]["A"].shape == (1, 16, 16) and one_channel[2]["B"].shape == (3, 16, 16)


def test_none_rounds_to_multiple_of_four_and_max_dataset_size(tmp_path):
    root = _mk(tmp_path / "train")
    for k in range(5):
        Image.new("RGB", (2 * 38, 30)).save(root / f"{k}.png")
    ds = AlignedDataset(tmp_path, "train", preprocess="none", max_dataset_size=3)
    assert len(ds) == 3 and ds[0]["A"].shape == (3, 32, 40)
    sw = AlignedDataset(tmp_path, "train", preprocess="scale_width", load_size=19, crop_size=8)
    assert sw[0]["A"].shape == (3, 15, 19)


def _err(root, match, **kwargs):
    with pytest.raises(DatasetError, match=match):
        AlignedDataset(root, "train", **kwargs)


def test_bad_input_messages(tmp_path):
    _err(tmp_path, r"the dataset folder .*train does not exist: pass --dataroot pointing at a folder with train/")
    (tmp_path / "val").mkdir()
    _err(tmp_path, r"does not exist \(it has: val\)")
    root = _mk(tmp_path / "train")
    (root / "readme.txt").write_text("x")
    _err(tmp_path, r"the train folder .*train contains no images \(\.png, \.jpg")
    Image.new("RGB", (33, 16)).save(root / "odd.png")
    _err(tmp_path, r"odd.png is 33x16: an A\|B pair needs an even width", preprocess="none")
    (root / "odd.png").unlink()
    Image.new("RGB", (40, 16)).save(root / "wide.png")
    _err(tmp_path, r"wide.png is 40x16, but --preprocess resize_and_crop needs the width to be twice the height")
    _err(tmp_path, r"wide.png has 20x16 halves, smaller than --crop_size 18", preprocess="crop", crop_size=18)
    assert len(AlignedDataset(tmp_path, "train", preprocess="scale_width_and_crop", load_size=20, crop_size=16)) == 1
    (root / "wide.png").unlink()
    (root / "junk.png").write_bytes(b"this is not a png")
    _err(tmp_path, r"cannot read the image .*junk.png \(.*\): the file is corrupt or not an image")
    (root / "junk.png").unlink()
    _err(tmp_path, r"--direction must be AtoB or BtoA, got 'AB'", direction="AB")
    _err(tmp_path, r"--preprocess must be one of resize_and_crop, crop", preprocess="zoom")
    _err(tmp_path, r"--load_size \(200\) must be >= --crop_size \(256\)", load_size=200)


def test_truncated_file_is_named_when_loaded(tmp_path):
    root = _mk(tmp_path / "train")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(root / "t.png")
    data = (root / "t.png").read_bytes()
    (root / "t.png").write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are not
    ds = AlignedDataset(tmp_path, "train", load_size=64, crop_size=64)
    with pytest.raises(DatasetError, match=r"cannot read the image .*t.png .*re-create or remove it"):
        ds[0]


def test_list_images_is_recursive_sorted_and_skips_hidden(tmp_path):
    for rel in ("b/2.png", "a/1.JPG", "a/.tmp.png", ".hidden/x.png", "c.txt", "0.webp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["0.webp", "a/1.JPG", "b/2.png"]


def test_more_argument_errors(ab_root, tmp_path):
    _err(ab_root, r"--max_dataset_size must be >= 1, got 0", max_dataset_size=0)
    _err(ab_root, r"--input_nc must be 1 or 3 for image data, got 4", input_nc=4)
    _err(ab_root, r"--load_size and --crop_size must be positive, got 286 and 0", crop_size=0)
    ds = AlignedDataset(ab_root, "val", load_size=64, crop_size=64)
    with pytest.raises(IndexError, match="index 4 out of range for a dataset of 4 images"):
        ds[(0, 4)]
    with pytest.raises(TypeError, match=r"a dataset key is an index or an \(epoch, index\) pair, got \(1, 2, 3\)"):
        ds[(1, 2, 3)]
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"the image folder .*file.png does not exist or is not a folder"):
        list_images(tmp_path / "file.png")
    from pix2pix_tr.data.aligned import open_image

    with pytest.raises(DatasetError, match=r"the image .*gone.png does not exist \(was it deleted"):
        open_image(tmp_path / "gone.png")
