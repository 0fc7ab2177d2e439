"""train.py --tensorboard: the loss-log rows, learning rates and gallery images land in checkpoints/NAME/tb/."""

from __future__ import annotations


import pytest

from pix2pix_tr.options import parse_train
from pix2pix_tr.report.plots import read_loss_log
from pix2pix_tr.training.loop import train
from conftest import tiny_args


def test_tensorboard_logs_what_the_csv_and_gallery_hold(ab_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(parse_train(tiny_args(ab_root, tmp_path, "tb_run", "--tensorboard")))
    run = tmp_path / "tb_run"
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/G_GAN", "loss/G_L1", "loss/D_real", "loss/D_fake", "lr/G", "lr/D"} <= set(tags["scalars"])
    assert {"gallery/real_A", "gallery/fake_B", "gallery/real_B"} <= set(tags["images"])
    _, csv = read_loss_log(run / "loss_log.csv")
    logged = events.Scalars("loss/G_L1")
    assert [e.step for e in logged] == [int(v) for v in csv["total_iters"]]
    assert [round(e.value, 3) for e in logged] == pytest.approx([round(v, 3) for v in csv["G_L1"]], abs=2e-3)
    assert len(events.Images("gallery/fake_B")) == 2  # --save_epoch_freq 1, two epochs
    assert (run / "loss_log.csv").is_file() and (run / "web" / "index.html").is_file()  # still written


def test_tensorboard_missing_is_one_sentence(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    from pix2pix_tr.training.cli import parse  # training checks its own options (the option layer cannot)

    with pytest.raises(SystemExit) as info:
        parse(["--dataroot", "x", "--tensorboard"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--tensorboard" in err and "pip install 'pix2pix-tr[tensorboard]'" in err
