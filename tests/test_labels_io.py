import numpy as np
import pytest
from PIL import Image

from evaluation import labels
from pix2pix_tr.io import atomic_save_image, atomic_torch_save, atomic_write_text


def test_label_table_matches_cityscapes():
    assert len(labels.LABELS) == 35
    assert [l.id for l in labels.LABELS[:-1]] == list(range(34))
    assert labels.TRAIN_CLASS_NAMES == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
    assert labels.ID_TO_TRAIN_ID[7] == 0 and labels.ID_TO_TRAIN_ID[33] == 18 and labels.ID_TO_TRAIN_ID[29] == 255
    assert labels.ID_TO_TRAIN_ID[200] == 255
    assert labels.NAME_TO_LABEL["sky"].color == (70, 130, 180)
    assert labels.TRAIN_PALETTE.shape == (19, 3)


def test_color_round_trip_resolves_collisions_to_same_train_id():
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    back = labels.color_to_id(labels.ids_to_color(ids))
    # colliding colours go to the smallest id; everything else is exact
    expected = ids.copy()
    expected[np.isin(ids, [1, 2, 3, 4])] = 0
    expected[ids == 18] = 17
    np.testing.assert_array_equal(back, expected)
    train = labels.ids_to_train_ids(ids)
    train[ids == 18] = 5  # polegroup (ignored) shares pole's colour: the documented loss
    np.testing.assert_array_equal(labels.color_to_train_id(labels.ids_to_color(ids)), train)


def test_unknown_colour_maps_to_unlabeled():
    img = np.array([[[1, 2, 3], [128, 64, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(labels.color_to_id(img), [[0, 7]])
    with pytest.raises(ValueError, match="expects an"):
        labels.color_to_id(np.zeros((4, 4), np.uint8))


def test_atomic_writes_replace_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_torch_save({"x": 1}, tmp_path / "ck.pth")
    atomic_save_image(np.full((4, 6, 3), 200, np.uint8), tmp_path / "im.png")
    assert Image.open(tmp_path / "im.png").size == (6, 4)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.txt", "ck.pth", "im.png"]
    from pix2pix_tr import io

    assert target.stat().st_mode & 0o777 == 0o666 & ~io._UMASK  # not mkstemp's owner-only 0600


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "precious")

    with pytest.raises(TypeError):  # the write fails half-way: the old content must survive
        atomic_write_text(target, object())  # type: ignore[arg-type]
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
