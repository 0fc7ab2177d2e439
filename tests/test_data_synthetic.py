"""The synthetic city: layout, determinism, label/colour consistency, class coverage, plausible places, CLI."""

import numpy as np
import pytest
from PIL import Image

from pix2pix_tr.cityscapes_labels import ID_TO_TRAIN_ID, NAME_TO_LABEL, ids_to_color
from pix2pix_tr.data.cli import run_cli, synthetic_main
from pix2pix_tr.data.synthetic_city import CITIES, make_synthetic_cityscapes, render_scene, scene_rng


def _stem(path, suffix):
    assert path.name.endswith(suffix), path
    return path.name[: -len(suffix)]


def test_layout_names_and_label_colour_consistency(synthetic_city):
    for split, n in (("train", 8), ("val", 4)):
        photos = sorted((synthetic_city / "leftImg8bit" / split).rglob("*.png"))
        assert len(photos) == n
        cities = {p.parent.name for p in photos}
        assert len(cities) >= 2 and cities <= set(CITIES[split])  # several cities per split
        for photo in photos:
            stem = _stem(photo, "_leftImg8bit.png")
            city, seq, frame = stem.split("_")
            assert city == photo.parent.name and len(seq) == 6 and len(frame) == 6
            gt = synthetic_city / "gtFine" / split / city
            ids = np.asarray(Image.open(gt / f"{stem}_gtFine_labelIds.png"))
            color = np.asarray(Image.open(gt / f"{stem}_gtFine_color.png").convert("RGB"))
            rgb = Image.open(photo)
            assert rgb.mode == "RGB" and rgb.size == (128, 64)
            assert ids.dtype == np.uint8 and ids.shape == (64, 128)
            np.testing.assert_array_equal(color, ids_to_color(ids))  # colours are the official palette of the ids
            assert set(np.unique(ids)) <= {1, 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 32, 33}


def test_deterministic_per_seed_and_independent_of_set_size(tmp_path):
    a = make_synthetic_cityscapes(tmp_path / "a", 3, 1, seed=5, width=64, height=32)
    b = make_synthetic_cityscapes(tmp_path / "b", 1, 0, seed=5, width=64, height=32)
    c = make_synthetic_cityscapes(tmp_path / "c", 1, 0, seed=6, width=64, height=32)
    assert a["train"][0] == b["train"][0] == c["train"][0]
    rel = f"leftImg8bit/train/{a['train'][0].split('_')[0]}/{a['train'][0]}_leftImg8bit.png"
    img = {k: np.asarray(Image.open(tmp_path / k / rel)) for k in "abc"}
    np.testing.assert_array_equal(img["a"], img["b"])  # image 0 does not depend on how many are made
    assert np.abs(img["a"].astype(int) - img["c"]).mean() > 5  # another seed, another street
    lab1, photo1 = render_scene(scene_rng(5, "val", 0), 96, 48)
    lab2, photo2 = render_scene(scene_rng(5, "val", 0), 96, 48)
    np.testing.assert_array_equal(lab1, lab2)
    np.testing.assert_array_equal(photo1, photo2)


@pytest.fixture(scope="module")
def fifty_scenes():
    return [render_scene(scene_rng(0, "train", i), 128, 64) for i in range(50)]


def test_class_coverage_over_fifty_images(fifty_scenes):
    counts = np.zeros(256, np.int64)
    per_image = np.zeros(256, np.int64)
    for labels, _ in fifty_scenes:
        c = np.bincount(labels.ravel(), minlength=256)
        counts += c
        per_image += c > 0
    train_ids = {int(ID_TO_TRAIN_ID[i]) for i in np.nonzero(counts)[0]} - {255}
    assert len(train_ids) >= 12, sorted(train_ids)
    share = counts / counts.sum()
    # the frequent classes are large and everywhere (what the newcomer demo's small scorer has to learn)
    for name, min_share, min_images in (("road", 0.15, 50), ("building", 0.08, 40), ("sky", 0.03, 45),
                                        ("vegetation", 0.05, 40), ("car", 0.03, 40), ("sidewalk", 0.03, 45)):
        label_id = NAME_TO_LABEL[name].id
        assert share[label_id] >= min_share, (name, share[label_id])
        assert per_image[label_id] >= min_images, (name, per_image[label_id])


def test_classes_in_plausible_places(fifty_scenes):
    rows = np.arange(64)[:, None]
    mean_row = {}
    for name in ("sky", "road", "building", "car", "person"):
        label_id = NAME_TO_LABEL[name].id
        weights = sum((labels == label_id).astype(np.int64) for labels, _ in fifty_scenes)
        mean_row[name] = float((weights * rows).sum() / max(weights.sum(), 1))
    assert mean_row["sky"] < 16 and mean_row["sky"] < mean_row["building"] < mean_row["car"] < mean_row["road"], mean_row
    assert 20 < mean_row["person"] < 50
    for labels, _ in fifty_scenes:
        assert (labels[-1] == NAME_TO_LABEL["sky"].id).sum() == 0  # no sky on the bottom row
        assert (labels[0] == NAME_TO_LABEL["road"].id).sum() == 0  # no road on the top row


def test_photo_is_rendered_from_labels_not_a_colour_lookup(fifty_scenes):
    labels = np.concatenate([l.ravel() for l, _ in fifty_scenes])
    photos = np.concatenate([p.reshape(-1, 3) for _, p in fifty_scenes]).astype(np.float64)
    road, sky, veg = (NAME_TO_LABEL[n].id for n in ("road", "sky", "vegetation"))
    means = {k: photos[labels == k].mean(0) for k in (road, sky, veg)}
    # classes are told apart by colour on average (photo -> labels is learnable) ...
    assert means[sky][2] > means[road][2] + 30  # sky is bluer/brighter than asphalt
    assert means[veg][1] > means[veg][2] + 15  # foliage is green
    # ... but a class is not one colour (textures, lighting, lane marks): labels -> photo is not a lookup
    for k in (road, sky, veg):
        assert photos[labels == k].std(0).mean() > 8


def test_cli_writes_the_layout_and_rejects_bad_input(tmp_path, capsys):
    assert run_cli(synthetic_main, ["--out", str(tmp_path / "c"), "--train", "2", "--val", "1", "--width", "64",
                                    "--height", "32", "--quiet"]) == 0
    assert "wrote 2 train, 1 val" in capsys.readouterr().out
    assert len(list((tmp_path / "c" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))) == 1
    for argv, message in ((["--train", "-3"], "--train: expected a number >= 0, got -3"),
                          (["--width", "8"], "--width/--height must be at least 16x8, got 8x256"),
                          (["--train", "0", "--val", "0"], "nothing to do: --train, --val and --test are all 0")):
        with pytest.raises(SystemExit) as exc:
            synthetic_main(["--out", str(tmp_path / "bad")] + argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_train must be >= 0"):
        make_synthetic_cityscapes(tmp_path / "bad", -1, 0)
