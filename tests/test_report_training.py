"""Training-side reports: tensor_to_image, the incremental training gallery, the loss plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.report import TrainingGallery, plot_losses, tensor_to_image
from pix2pix_tr.report.html import rel_url
from conftest import assert_links_resolve, parse_page


# ---------------------------------------------------------------------------------------------- tensor_to_image
def test_tensor_to_image_scaling_and_layout():
    t = torch.tensor([-1.0, 0.0, 1.0, 2.0, -3.0, 0.5]).reshape(3, 1, 2)  # C=3, H=1, W=2
    img = tensor_to_image(t)
    assert img.shape == (1, 2, 3) and img.dtype == np.uint8
    # channel c, pixel w -> img[0, w, c]
    np.testing.assert_array_equal(img[0, :, 0], [0, 128])  # -1 -> 0, 0 -> 127.5 rounds to 128 (half to even)
    np.testing.assert_array_equal(img[0, :, 1], [255, 255])  # 1 -> 255, 2 clipped
    np.testing.assert_array_equal(img[0, :, 2], [0, 191])  # -3 clipped, 0.5 -> 191.25
    batched = tensor_to_image(t[None])
    np.testing.assert_array_equal(batched, img)
    gray = tensor_to_image(torch.zeros(1, 2, 2, requires_grad=True))
    assert gray.shape == (2, 2, 3)


def test_tensor_to_image_rejects_real_batches():
    with pytest.raises(ValueError, match="batch of 2 images"):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_uint8_arrays_pass_through():
    a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    np.testing.assert_array_equal(tensor_to_image(a), a)


def test_rel_url_quotes_and_is_relative(tmp_path):
    target = tmp_path / "a b" / "x#1.png"
    assert rel_url(target, tmp_path / "page") == "../a%20b/x%231.png"


# ---------------------------------------------------------------------------------------------- training gallery
def _visuals(value: float):
    return {"real_A": torch.full((3, 8, 8), value), "fake_B": np.full((8, 8, 3), 7, np.uint8),
            "real_B": torch.full((1, 3, 8, 8), -value)}


def test_training_gallery_keeps_old_epochs_newest_first(tmp_path):
    web = tmp_path / "run" / "web"
    g = TrainingGallery(web, "run")
    g.add_epoch(1, _visuals(-1.0), info={"G_L1": torch.tensor(3.25)})
    g.add_epoch(2, _visuals(1.0))
    page = web / "index.html"
    assert parse_page(page).h2 == ["epoch 2", "epoch 1"]
    links = assert_links_resolve(page)
    assert "images/epoch001_real_A.png" in links and "images/epoch002_fake_B.png" in links
    assert "G_L1: 3.25" in page.read_text()
    assert np.asarray(Image.open(web / "images" / "epoch001_real_A.png")).max() == 0
    assert np.asarray(Image.open(web / "images" / "epoch002_real_A.png")).min() == 255

    # incremental: a later epoch does not touch earlier images
    before = (web / "images" / "epoch001_real_A.png").stat().st_mtime_ns
    (web / "images" / "epoch001_real_B.png").write_bytes(b"not read again")
    g.add_epoch(3, _visuals(0.0))
    assert (web / "images" / "epoch001_real_B.png").read_bytes() == b"not read again"
    assert (web / "images" / "epoch001_real_A.png").stat().st_mtime_ns == before

    # a resumed run (new object) keeps the entries; a repeated epoch replaces its entry
    g2 = TrainingGallery(web, "run")
    g2.add_epoch(2, _visuals(-1.0))
    g2.add_epoch(10, _visuals(0.0))
    assert parse_page(page).h2 == ["epoch 10", "epoch 3", "epoch 2", "epoch 1"]
    assert np.asarray(Image.open(web / "images" / "epoch002_real_A.png")).max() == 0
    index = json.loads((web / "gallery.json").read_text())
    assert [e["epoch"] for e in index["entries"]] == [10, 3, 2, 1]

    # reset=True starts over
    g3 = TrainingGallery(web, "run", reset=True)
    g3.add_epoch(1, _visuals(0.0))
    assert parse_page(page).h2 == ["epoch 1"]


def test_training_gallery_links_loss_curve(tmp_path):
    run = tmp_path / "run"
    (run / "loss_log.csv").parent.mkdir(parents=True)
    (run / "loss_log.csv").write_text("epoch,total_iters,G_GAN,G_L1,D_real,D_fake\n1,1,0.7,30,0.6,0.7\n")
    plot_losses(run / "loss_log.csv", run / "loss_curve.png")
    TrainingGallery(run / "web", "run").add_epoch(1, _visuals(0.0))
    assert "../loss_curve.png" in assert_links_resolve(run / "web" / "index.html")


def test_training_gallery_bad_index_message(tmp_path):
    (tmp_path / "gallery.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"gallery\.json is not a training gallery index.*delete it"):
        TrainingGallery(tmp_path, "x")


# ---------------------------------------------------------------------------------------------- loss plot
def test_plot_losses_writes_png(tmp_path):
    csv = tmp_path / "loss_log.csv"
    rows = ["epoch,iters,total_iters,G_GAN,G_L1,D_real,D_fake,lr_G,time"]
    rows += [f"1,{i},{i},{0.7 + 0.01 * i},{30 - i},{0.5},{0.6},0.0002,{0.1 * i}" for i in range(1, 20)]
    csv.write_text("\n".join(rows) + "\n3,4,")  # a trailing row cut short by an interrupted write is skipped
    out = plot_losses(csv, tmp_path / "sub" / "loss_curve.png")
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
    assert np.asarray(img.convert("L")).std() > 1  # something was drawn


def test_plot_losses_empty_log_and_missing_log(tmp_path):
    csv = tmp_path / "loss_log.csv"
    csv.write_text("epoch,total_iters,G_GAN\n")
    assert plot_losses(csv, tmp_path / "empty.png").is_file()
    with pytest.raises(FileNotFoundError, match="nothere.csv does not exist; it is written by train.py"):
        plot_losses(tmp_path / "nothere.csv", tmp_path / "x.png")
