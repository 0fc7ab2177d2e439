"""The FCN-score's arithmetic: a confusion matrix over train ids and the three scores read off it.

The FCN-score labels each synthesized photo with a segmentation network and compares the predicted label map
with the ground truth the photo was synthesized from. Everything is read off one ``(C, C)`` confusion matrix
summed over all frames (rows: ground truth, columns: prediction):

* **per-pixel accuracy**  ``trace(M) / M.sum()``
* **per-class accuracy**  mean over classes of ``M[c, c] / M[c, :].sum()`` (recall of class c)
* **class IoU**           mean over classes of ``M[c, c] / (M[c, :].sum() + M[:, c].sum() - M[c, c])``

Two conventions for a class that never occurs in the ground truth (``M[c, :].sum() == 0``):

* default (the official Cityscapes scripts): the class is left out of both means (its entries are NaN);
* ``pix2pix_compat=True`` (the original pix2pix ``scripts/eval_cityscapes/util.py``): every denominator gets
  ``+ 1e-12``, so the class scores 0 and still counts in the mean. Use this to set numbers beside the published
  pix2pix / TRAdam tables; with all 19 classes present (the full Cityscapes val set) both agree to ~1e-12.

Example::

    conf = np.zeros((19, 19), np.int64)
    for gt, pred in frames:                       # (H, W) train-id maps; 255 in gt = ignored
        conf += confusion_matrix(gt, pred)
    scores = segmentation_scores(conf)
    scores["per_pixel_acc"], scores["per_class_acc"], scores["class_iou"]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evaluation.labels import IGNORE_INDEX, NUM_CLASSES, TRAIN_CLASS_NAMES

#: What the original pix2pix evaluator adds to every denominator.
PIX2PIX_EPS = 1e-12


def _as_int64_flat(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        raise TypeError(f"confusion_matrix: {what} must hold integer class indices, got dtype {x.dtype}")
    return x.reshape(-1).astype(np.int64, copy=False)


def confusion_matrix(gt: Any, pred: Any, num_classes: int = NUM_CLASSES, *,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Count (ground truth, prediction) pairs: ``M[i, j]`` = pixels of true class i predicted as j.

    ``gt`` and ``pred`` are integer arrays (numpy or torch, any equal shape, e.g. (H, W) or (N, H, W)) of
    train ids. Ground-truth pixels equal to ``ignore_index`` (255) or outside ``[0, num_classes)`` are skipped,
    as in the original evaluator. A *prediction* outside ``[0, num_classes)`` on a counted pixel is an error
    (the original silently mis-binned it or dropped the whole frame). Returns int64 ``(num_classes,
    num_classes)``; sum the matrices of several frames or batches to accumulate (the result is identical to one
    call on everything at once). A torch tensor on a GPU is counted there (``torch.bincount``).
    """
    if num_classes < 1:
        raise ValueError(f"confusion_matrix: num_classes must be >= 1, got {num_classes}")
    if hasattr(gt, "detach") and hasattr(pred, "detach"):
        return _confusion_matrix_torch(gt, pred, num_classes, ignore_index)
    gt_shape, pred_shape = np.shape(gt), np.shape(pred)
    if gt_shape != pred_shape:
        raise ValueError(f"confusion_matrix: ground truth has shape {gt_shape} but the prediction has shape "
                         f"{pred_shape}; resize one to the other first")
    g = _as_int64_flat(gt, "ground truth")
    p = _as_int64_flat(pred, "prediction")
    keep = (g >= 0) & (g < num_classes)
    if ignore_index is not None:
        keep &= g != ignore_index
    g, p = g[keep], p[keep]
    bad = (p < 0) | (p >= num_classes)
    if bad.any():
        values = np.unique(p[bad])[:10].tolist()
        raise ValueError(f"confusion_matrix: the prediction holds class indices {values} outside "
                         f"[0, {num_classes}); the scorer must predict train ids 0..{num_classes - 1}")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def _confusion_matrix_torch(gt, pred, num_classes: int, ignore_index: int | None) -> np.ndarray:
    import torch

    if gt.shape != pred.shape:
        raise ValueError(f"confusion_matrix: ground truth has shape {tuple(gt.shape)} but the prediction has shape "
                         f"{tuple(pred.shape)}; resize one to the other first")
    if gt.is_floating_point() or pred.is_floating_point():
        raise TypeError("confusion_matrix: ground truth and prediction must hold integer class indices")
    g = gt.reshape(-1).long()
    p = pred.reshape(-1).to(g.device).long()
    keep = (g >= 0) & (g < num_classes)
    if ignore_index is not None:
        keep &= g != ignore_index
    g, p = g[keep], p[keep]
    bad = (p < 0) | (p >= num_classes)
    if bool(bad.any()):
        values = torch.unique(p[bad])[:10].tolist()
        raise ValueError(f"confusion_matrix: the prediction holds class indices {values} outside "
                         f"[0, {num_classes}); the scorer must predict train ids 0..{num_classes - 1}")
    counts = torch.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64, copy=False)


def segmentation_scores(confusion: np.ndarray, pix2pix_compat: bool = False,
                        class_names: Sequence[str] | None = None) -> dict:
    """The three FCN-scores and the per-class arrays from a summed confusion matrix.

    Returns a dict:

    * ``per_pixel_acc``, ``per_class_acc``, ``class_iou``: floats (the paper's three columns);
    * ``per_class_accuracy``, ``per_class_iou``: float arrays of length C (NaN for a class absent from the
      ground truth in the default mode; 0 in compat mode);
    * ``class_present``: bool array, class occurs in the ground truth; ``num_present``: its sum;
    * ``class_pixels``: int array, ground-truth pixels per class; ``total_pixels``: int;
    * ``class_names``: list of C names (the 19 Cityscapes train classes when C == 19);
    * ``pix2pix_compat``: the convention used.

    Default: classes absent from the ground truth are left out of the means (official Cityscapes scripts; note
    a class absent from the GT but predicted somewhere has IoU 0 in cityscapesScripts, whereas here it is left
    out like its accuracy, because its IoU carries no information about that class). ``pix2pix_compat=True``:
    the original pix2pix arithmetic, ``x / (denominator + 1e-12)`` and a plain mean over all C classes.
    """
    conf = np.asarray(confusion)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"segmentation_scores: expected a square (C, C) confusion matrix, got shape {conf.shape}")
    if (conf < 0).any():
        raise ValueError("segmentation_scores: the confusion matrix has negative counts")
    c = conf.shape[0]
    if class_names is None:
        class_names = list(TRAIN_CLASS_NAMES) if c == NUM_CLASSES else [f"class_{i}" for i in range(c)]
    elif len(class_names) != c:
        raise ValueError(f"segmentation_scores: {len(class_names)} class names for a {c}x{c} confusion matrix")
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt_pixels = conf.sum(axis=1)
    pred_pixels = conf.sum(axis=0)
    union = gt_pixels + pred_pixels - tp
    total = conf.sum()
    present = gt_pixels > 0
    if pix2pix_compat:
        pixel_acc = float(tp.sum() / (total + PIX2PIX_EPS))
        cls_acc = tp / (gt_pixels + PIX2PIX_EPS)
        iou = tp / (union + PIX2PIX_EPS)
        mean_acc, mean_iou = float(np.mean(cls_acc)), float(np.mean(iou))
    else:
        pixel_acc = float(tp.sum() / total) if total > 0 else float("nan")
        cls_acc = np.full(c, np.nan)
        iou = np.full(c, np.nan)
        cls_acc[present] = tp[present] / gt_pixels[present]
        iou[present] = tp[present] / union[present]
        mean_acc = float(np.mean(cls_acc[present])) if present.any() else float("nan")
        mean_iou = float(np.mean(iou[present])) if present.any() else float("nan")
    return {
        "per_pixel_acc": pixel_acc,
        "per_class_acc": mean_acc,
        "class_iou": mean_iou,
        "per_class_accuracy": cls_acc,
        "per_class_iou": iou,
        "class_present": present,
        "num_present": int(present.sum()),
        "class_pixels": gt_pixels.astype(np.int64),
        "total_pixels": int(total),
        "class_names": list(class_names),
        "pix2pix_compat": bool(pix2pix_compat),
    }


def majority_confusion(confusion: np.ndarray) -> tuple[np.ndarray, int]:
    """The confusion matrix of the majority-class baseline: predict the most frequent GT class everywhere.

    Returns ``(matrix, class_index)``. Any useful scorer must beat ``segmentation_scores`` of this matrix.
    """
    conf = np.asarray(confusion, dtype=np.int64)
    rows = conf.sum(axis=1)
    majority = int(np.argmax(rows))
    base = np.zeros_like(conf)
    base[:, majority] = rows
    return base, majority


def scores_to_json(scores: dict) -> dict:
    """``segmentation_scores`` output with arrays as lists and NaN as None (valid JSON)."""
    def clean(v):
        if isinstance(v, np.ndarray):
            return [clean(x) for x in v.tolist()]
        if isinstance(v, (float, np.floating)):
            return None if np.isnan(v) else float(v)
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.bool_,)):
            return bool(v)
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return {k: clean(v) for k, v in scores.items()}
