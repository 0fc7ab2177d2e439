"""LossLog appends rows (no rewrite per row) and a resumed log equals an uninterrupted one."""

from __future__ import annotations

import os

from pix2pix_tr.report.plots import read_loss_log
from pix2pix_tr.training.loss_log import LossLog

COLUMNS = ["epoch", "total_iters", "G_GAN", "time"]


def _row(i: int) -> dict:
    return {"epoch": 1, "total_iters": i, "G_GAN": 0.5 + i / 3, "time": 0.25 * i}


def test_rows_are_appended_to_the_same_file(tmp_path):
    path = tmp_path / "loss_log.csv"
    log = LossLog(path, COLUMNS)
    assert path.read_text() == "epoch,total_iters,G_GAN,time\n"
    inode = os.stat(path).st_ino
    for i in (1, 2, 3):
        before = path.read_bytes()
        log.append(_row(i))
        after = path.read_bytes()
        assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert os.stat(path).st_ino == inode  # appended in place, never replaced
    assert path.read_text().splitlines()[1:] == ["1,1,0.833333,0.25", "1,2,1.16667,0.5", "1,3,1.5,0.75"]
    assert read_loss_log(path)[1]["total_iters"] == [1.0, 2.0, 3.0]


def test_resume_drops_later_rows_and_an_unfinished_last_row(tmp_path):
    path = tmp_path / "loss_log.csv"
    log = LossLog(path, COLUMNS)
    for i in (1, 2, 3, 4):
        log.append(_row(i))
    uninterrupted = path.read_text()
    with open(path, "a") as handle:
        handle.write("1,5,0.7")  # a crash in the middle of a row
    assert read_loss_log(path)[1]["total_iters"] == [1.0, 2.0, 3.0, 4.0]  # readers skip it meanwhile

    resumed = LossLog(path, COLUMNS, resume_at=2)  # the saved state was at iteration 2
    assert path.read_text().splitlines()[1:] == ["1,1,0.833333,0.25", "1,2,1.16667,0.5"]
    resumed.append(_row(3))
    resumed.append(_row(4))
    assert path.read_text() == uninterrupted

    inode = os.stat(path).st_ino
    LossLog(path, COLUMNS, resume_at=4).append(_row(5))  # nothing to drop: the file is kept and appended to
    assert os.stat(path).st_ino == inode and path.read_text() == uninterrupted + "1,5,2.16667,1.25\n"
    LossLog(path, COLUMNS)  # a fresh run starts a fresh log
    assert path.read_text() == "epoch,total_iters,G_GAN,time\n"
