"""Our default class IoU equals cityscapesScripts' ``evalPixelLevelSemanticLabeling`` on the same label PNGs.

Needs the ``cityscapesscripts`` package from PyPI (``pip install 'pix2pix-tr[test]'``).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from PIL import Image

from evaluation.common import load_train_ids
from evaluation.labels import LABELS, NUM_CLASSES, TRAIN_CLASS_NAMES, ids_to_train_ids
from evaluation.metrics import confusion_matrix, segmentation_scores

# a declared test dependency (the [test] extra): missing, this module fails rather than skipping unnoticed
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval  # noqa: E402

#: train id -> label id (the 19 evaluated classes)
TRAIN_TO_ID = np.array([next(lab.id for lab in LABELS if lab.train_id == t) for t in range(NUM_CLASSES)], np.uint8)
#: label ids the ground truth may hold but that are ignored in evaluation
IGNORED_IDS = np.array([lab.id for lab in LABELS if lab.ignore_in_eval and lab.id >= 0], np.uint8)


def _frames(kind: str, rng: np.random.Generator, n: int = 3, shape=(24, 40)):
    """``n`` (ground-truth label ids, predicted label ids) pairs of one kind."""
    for _ in range(n):
        h, w = shape
        if kind == "random":
            gt = TRAIN_TO_ID[rng.integers(0, NUM_CLASSES, size=shape)]
            pred = TRAIN_TO_ID[rng.integers(0, NUM_CLASSES, size=shape)]
        else:  # "structured": a few horizontal bands of classes, the prediction shifts and corrupts them
            train = np.zeros(shape, np.int64)
            bands = rng.choice(NUM_CLASSES, size=4, replace=False)
            for i, c in enumerate(bands):
                train[i * h // 4:(i + 1) * h // 4] = c
            gt = TRAIN_TO_ID[train]
            shifted = np.roll(train, int(rng.integers(1, 4)), axis=0)
            noise = rng.random(shape) < 0.1
            shifted[noise] = rng.integers(0, NUM_CLASSES, size=int(noise.sum()))
            pred = TRAIN_TO_ID[shifted]
        ignore = rng.random(shape) < 0.15  # void pixels in the ground truth: skipped by both
        gt = gt.copy()
        gt[ignore] = rng.choice(IGNORED_IDS, size=int(ignore.sum()))
        yield gt, pred


def _absent_classes(gt_pred, absent_train_ids):
    """Remove ``absent_train_ids`` from the ground truth (-> road) but keep predicting them somewhere."""
    road = TRAIN_TO_ID[0]
    for gt, pred in gt_pred:
        for t in absent_train_ids:
            gt[gt == TRAIN_TO_ID[t]] = road
            pred[0, t] = TRAIN_TO_ID[t]  # predicted on one pixel at least
        yield gt, pred


@pytest.mark.parametrize("kind", ["random", "structured", "absent"])
def test_default_class_iou_equals_cityscapes_scripts(tmp_path, kind):
    rng = np.random.default_rng({"random": 0, "structured": 1, "absent": 2}[kind])
    if kind == "absent":
        absent = [4, 12, 16]  # fence, rider, train: nowhere in the ground truth, predicted on some pixels
        pairs = list(_absent_classes(_frames("structured", rng), absent))
    else:
        pairs = list(_frames(kind, rng))
    gt_files, pred_files = [], []
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for i, (gt, pred) in enumerate(pairs):
        gt_file = tmp_path / f"city_{i:06d}_000019_gtFine_labelIds.png"
        pred_file = tmp_path / f"city_{i:06d}_000019_pred.png"
        Image.fromarray(gt, mode="L").save(gt_file)
        Image.fromarray(pred, mode="L").save(pred_file)
        gt_files.append(str(gt_file))
        pred_files.append(str(pred_file))
        # our side reads the PNGs the way fcn_score does
        conf += confusion_matrix(load_train_ids(gt_file), ids_to_train_ids(np.asarray(Image.open(pred_file))))
    if kind == "absent":
        assert all(conf[t].sum() == 0 and conf[:, t].sum() > 0 for t in absent)

    args = copy.copy(cs_eval.args)  # the module's settings object: no instance files, no JSON, no printing
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.exportFile = str(tmp_path / "unused.json")
    theirs = cs_eval.evaluateImgLists(pred_files, gt_files, args)

    ours = segmentation_scores(conf)
    assert ours["convention"] == "cityscapes"
    for t, name in enumerate(TRAIN_CLASS_NAMES):
        a, b = ours["per_class_iou"][t], theirs["classScores"][name]
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (name, a, b)
    assert abs(ours["class_iou"] - theirs["averageScoreClasses"]) <= 1e-12
    if kind == "absent":
        # the convention matters here: leaving the absent classes out gives a higher, different mean
        assert segmentation_scores(conf, convention="gt_classes")["class_iou"] > ours["class_iou"] + 0.01
        assert all(ours["per_class_iou"][t] == 0.0 for t in absent)
