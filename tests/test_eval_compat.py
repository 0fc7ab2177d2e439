"""The seams with other tools: results recorded at different sizes, numbered (official pix2pix) file names,
and ``import evaluation.metrics`` staying free of torch and OpenCV."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluation import compare_runs
from evaluation.common import MissingFramesError
from evaluation.fcn_score import match_frames


def _results(folder, **extra):
    folder.mkdir(parents=True)
    body = {"scores": {"per_pixel_acc": 0.5, "per_class_acc": 0.25, "class_iou": 0.125}, "protocol": "pix2pix",
            "convention": "cityscapes", "num_frames": 4, "scorer": {"sha256": "ab" * 32}, **extra}
    (folder / "evaluation_results.json").write_text(json.dumps(body))
    return folder


def test_compare_runs_warns_when_rows_were_scored_at_different_sizes(tmp_path):
    a = _results(tmp_path / "a", synthesized_size=[256, 256])
    b = _results(tmp_path / "b", synthesized_size=[128, 128])
    c = _results(tmp_path / "c", synthesized_size=[256, 256])
    old = _results(tmp_path / "old")  # written before the size was recorded: not compared
    table, warnings = compare_runs.compare_table([a, b], ["A", "B"])
    assert "| A | 0.500 | 0.250 | 0.125 |" in table
    assert warnings == ["rows differ in synthesized size (A: [256, 256], B: [128, 128]); they are not directly "
                        "comparable"]
    assert compare_runs.compare_table([a, c, old])[1] == []


def test_numbered_official_file_names_get_one_sentence_on_frame_names(tmp_path):
    fake = {str(i): tmp_path / f"{i}_fake_B.png" for i in range(3)}  # what the official preparation produces
    gt = {"aachen_000000_000019": tmp_path / "x.png"}
    with pytest.raises(MissingFramesError) as info:
        match_frames(fake, gt, result_dir=tmp_path, cityscapes_dir=tmp_path, split="val", allow_subset=False)
    message = str(info.value)
    assert "named like 0_fake_B.png, not by Cityscapes frame" in message
    assert "python datasets/prepare_cityscapes_dataset.py --gtFine_dir" in message and "\n" not in message
    # frame-named photos keep the ordinary message listing what is missing
    with pytest.raises(MissingFramesError, match="have no ground truth"):
        match_frames({"bonn_000000_000019": tmp_path}, gt, result_dir=tmp_path, cityscapes_dir=tmp_path,
                     split="val", allow_subset=False)


def test_importing_the_metrics_loads_neither_torch_nor_opencv():
    code = ("import sys, evaluation.metrics, evaluation.labels; "
            "print(sorted(m for m in ('torch', 'cv2', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
