"""FCN-score arithmetic: confusion matrices and the three scores, checked against hand computations."""

import numpy as np
import pytest
import torch

from evaluation import labels
from evaluation.metrics import confusion_matrix, majority_confusion, scores_to_json, segmentation_scores


def test_confusion_matrix_hand_computed():
    gt = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 1]])
    conf = confusion_matrix(gt, pred, num_classes=3)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, expected)


def test_scores_hand_computed():
    conf = np.array([[1, 1, 0],
                     [0, 2, 0],
                     [1, 0, 1]])
    s = segmentation_scores(conf)
    assert s["per_pixel_acc"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(s["per_class_accuracy"], [1 / 2, 2 / 2, 1 / 2])
    assert s["per_class_acc"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # IoU: tp / (row + col - tp)
    np.testing.assert_allclose(s["per_class_iou"], [1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 1 / (2 + 1 - 1)])
    assert s["class_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["class_names"] == ["class_0", "class_1", "class_2"]
    np.testing.assert_array_equal(s["class_pixels"], [2, 2, 2])


def test_perfect_prediction_scores_one_in_both_conventions():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 19, size=(2, 16, 16))
    gt.reshape(-1)[:19] = np.arange(19)  # every class present
    for compat in (False, True):
        s = segmentation_scores(confusion_matrix(gt, gt), pix2pix_compat=compat)
        assert s["per_pixel_acc"] == pytest.approx(1.0)
        assert s["per_class_acc"] == pytest.approx(1.0)
        assert s["class_iou"] == pytest.approx(1.0)
    assert s["class_names"] == list(labels.TRAIN_CLASS_NAMES)


def test_ignore_index_and_out_of_range_ground_truth_are_skipped():
    gt = np.array([255, 0, 1, 255, 200])
    pred = np.array([1, 0, 0, 7, 3])  # the 7 and 3 sit on ignored pixels: no error, not counted
    conf = confusion_matrix(gt, pred, num_classes=3)
    np.testing.assert_array_equal(conf, [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert conf.sum() == 2


def test_prediction_outside_class_range_raises():
    gt = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"prediction holds class indices \[19\] outside \[0, 19\)"):
        confusion_matrix(gt, np.full((2, 2), 19))
    with pytest.raises(ValueError, match=r"outside \[0, 19\)"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), -1))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(np.zeros(3, int), np.zeros(3, float))


def test_class_absent_from_ground_truth_under_the_three_conventions():
    # class 2 never occurs in the ground truth but is predicted once
    conf = np.array([[3, 0, 1],
                     [0, 2, 0],
                     [0, 0, 0]])
    official = segmentation_scores(conf)  # cityscapesScripts: predicted-but-absent scores IoU 0
    assert official["convention"] == "cityscapes" and official["num_present"] == 2
    assert np.isnan(official["per_class_accuracy"][2]) and official["per_class_iou"][2] == 0.0
    assert official["per_class_acc"] == pytest.approx((3 / 4 + 1) / 2)
    assert official["class_iou"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    gt_only = segmentation_scores(conf, convention="gt_classes")  # absent classes left out of both means
    assert np.isnan(gt_only["per_class_iou"][2]) and gt_only["class_iou"] == pytest.approx((3 / 4 + 1) / 2)
    assert gt_only["per_class_acc"] == official["per_class_acc"]
    # a class on neither side has no IoU in any but the pix2pix convention
    wider = np.zeros((4, 4), int)
    wider[:3, :3] = conf
    assert np.isnan(segmentation_scores(wider)["per_class_iou"][3])
    assert segmentation_scores(wider)["class_iou"] == official["class_iou"]
    with pytest.raises(ValueError, match="convention 'official' is not one of"):
        segmentation_scores(conf, convention="official")
    with pytest.raises(ValueError, match="contradicts"):
        segmentation_scores(conf, pix2pix_compat=True, convention="cityscapes")
    compat = segmentation_scores(conf, pix2pix_compat=True)
    assert compat["per_class_accuracy"][2] == 0.0 and compat["per_class_iou"][2] == 0.0
    assert compat["per_class_acc"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert compat["class_iou"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    # The original pix2pix evaluator's arithmetic, written out.
    hist = conf.astype(float)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    cl = np.diag(hist) / (hist.sum(1) + 1e-12)
    assert compat["class_iou"] == pytest.approx(np.nanmean(iu), abs=1e-15)
    assert compat["per_class_acc"] == pytest.approx(np.nanmean(cl), abs=1e-15)
    assert official["per_pixel_acc"] == 5 / 6 and compat["per_pixel_acc"] == pytest.approx(5 / 6, abs=1e-12)
    js = scores_to_json(gt_only)
    assert js["per_class_iou"][2] is None and js["class_present"] == [True, True, False]


def test_accumulating_frames_equals_one_shot_and_torch_equals_numpy():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 19, size=(5, 12, 20)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 19, size=gt.shape)
    total = np.zeros((19, 19), np.int64)
    for g, p in zip(gt, pred):
        total += confusion_matrix(g, p)
    np.testing.assert_array_equal(total, confusion_matrix(gt, pred))
    np.testing.assert_array_equal(total, confusion_matrix(torch.from_numpy(gt), torch.from_numpy(pred)))
    assert total.sum() == (gt != 255).sum()


def test_majority_baseline():
    conf = np.array([[5, 1], [2, 2]])
    base, cls = majority_confusion(conf)
    assert cls == 0
    np.testing.assert_array_equal(base, [[6, 0], [4, 0]])
    s = segmentation_scores(base)
    assert s["per_pixel_acc"] == pytest.approx(0.6)
    assert s["per_class_acc"] == pytest.approx(0.5)
    assert s["class_iou"] == pytest.approx(0.6 / 2)


def test_bad_confusion_matrices_are_rejected():
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        segmentation_scores(np.array([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="2 class names for a 3x3"):
        segmentation_scores(np.eye(3), class_names=["a", "b"])


def test_label_table_used_by_the_evaluator():
    ids = np.array([7, 8, 26, 33, 0, 1, 29, 18])
    np.testing.assert_array_equal(labels.ids_to_train_ids(ids), [0, 1, 13, 18, 255, 255, 255, 255])
    assert tuple(labels.TRAIN_PALETTE[labels.TRAIN_CLASS_NAMES.index("car")]) == (0, 0, 142)
    np.testing.assert_array_equal(labels.train_ids_to_color(np.array([[10, 255]])), [[[70, 130, 180], [0, 0, 0]]])
