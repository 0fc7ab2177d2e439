"""The FCN-score's arithmetic: a confusion matrix over train ids and the three scores read off it.

The FCN-score labels each synthesized photo with a segmentation network and compares the predicted label map
with the ground truth the photo was synthesized from. Everything is read off one ``(C, C)`` confusion matrix
summed over all frames (rows: ground truth, columns: prediction):

* **per-pixel accuracy**  ``trace(M) / M.sum()``
* **per-class accuracy**  mean over classes of ``M[c, c] / M[c, :].sum()`` (recall of class c)
* **class IoU**           mean over classes of ``M[c, c] / (M[c, :].sum() + M[:, c].sum() - M[c, c])``

Three conventions for a class that never occurs in the ground truth (``M[c, :].sum() == 0``), named by
:data:`CONVENTIONS`:

* ``"cityscapes"`` (default): exactly cityscapesScripts' ``evalPixelLevelSemanticLabeling``. The IoU of such a
  class is 0 when the scorer predicted it somewhere (``tp + fp + fn > 0``) and undefined (NaN, left out of the
  mean) only when it occurs on neither side; its accuracy (recall) is NaN and left out of the per-class mean
  (cityscapesScripts reports no per-class accuracy). ``tests/test_eval_cityscapes_scripts.py`` checks equality with
  the PyPI ``cityscapesscripts`` package on label PNGs;
* ``"gt_classes"``: only classes present in the ground truth count, in both means (a predicted-but-absent class
  is left out rather than scored 0). Higher than ``"cityscapes"`` whenever the scorer hallucinates a class;
* ``"pix2pix"`` (``pix2pix_compat=True``, the original pix2pix ``scripts/eval_cityscapes/util.py``): every
  denominator gets ``+ 1e-12``, so an absent class scores 0 and still counts in both means. Use this to set
  numbers beside the published pix2pix / TRAdam tables.

With all 19 classes present (the full Cityscapes val set) the three agree to ~1e-12.

Example::

    conf = np.zeros((19, 19), np.int64)
    for gt, pred in frames:                       # (H, W) train-id maps; 255 in gt = ignored
        conf += confusion_matrix(gt, pred)
    scores = segmentation_scores(conf)
    scores["per_pixel_acc"], scores["per_class_acc"], scores["class_iou"]
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from evaluation.labels import IGNORE_INDEX, NUM_CLASSES, TRAIN_CLASS_NAMES
from pix2pix_tr.cli import json_clean

#: What the original pix2pix evaluator adds to every denominator.
PIX2PIX_EPS = 1e-12
#: The absent-class conventions of :func:`segmentation_scores` (see the module docstring); the first is the default.
CONVENTIONS = ("cityscapes", "gt_classes", "pix2pix")


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
                        class_names: Sequence[str] | None = None, *, convention: str | None = None) -> dict:
    """The three FCN-scores and the per-class arrays from a summed confusion matrix.

    ``convention`` is one of :data:`CONVENTIONS` (default ``"cityscapes"``; ``pix2pix_compat=True`` is the same
    as ``convention="pix2pix"``). Returns a dict:

    * ``per_pixel_acc``, ``per_class_acc``, ``class_iou``: floats (the paper's three columns);
    * ``per_class_accuracy``, ``per_class_iou``: float arrays of length C (NaN where the convention leaves the
      class out of the mean);
    * ``class_present``: bool array, class occurs in the ground truth; ``num_present``: its sum;
    * ``class_pixels``: int array, ground-truth pixels per class; ``total_pixels``: int;
    * ``class_names``: list of C names (the 19 Cityscapes train classes when C == 19);
    * ``convention`` and ``pix2pix_compat`` (``convention == "pix2pix"``).
    """
    if pix2pix_compat:
        if convention not in (None, "pix2pix"):
            raise ValueError(f"segmentation_scores: pix2pix_compat=True contradicts convention={convention!r}")
        convention = "pix2pix"
    convention = convention or "cityscapes"
    if convention not in CONVENTIONS:
        raise ValueError(f"segmentation_scores: convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
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
    if convention == "pix2pix":
        pixel_acc = float(tp.sum() / (total + PIX2PIX_EPS))
        cls_acc = tp / (gt_pixels + PIX2PIX_EPS)
        iou = tp / (union + PIX2PIX_EPS)
    else:
        pixel_acc = float(tp.sum() / total) if total > 0 else float("nan")
        cls_acc = np.full(c, np.nan)
        cls_acc[present] = tp[present] / gt_pixels[present]
        scored = present if convention == "gt_classes" else union > 0
        iou = np.full(c, np.nan)
        iou[scored] = tp[scored] / union[scored]
    return {
        "per_pixel_acc": pixel_acc,
        "per_class_acc": _nanmean(cls_acc),
        "class_iou": _nanmean(iou),
        "per_class_accuracy": cls_acc,
        "per_class_iou": iou,
        "class_present": present,
        "num_present": int(present.sum()),
        "class_pixels": gt_pixels.astype(np.int64),
        "total_pixels": int(total),
        "class_names": list(class_names),
        "convention": convention,
        "pix2pix_compat": convention == "pix2pix",
    }


def _nanmean(values: np.ndarray) -> float:
    """The mean of the defined (non-NaN) entries, summed in index order as cityscapesScripts does; NaN if none."""
    total, count = 0.0, 0
    for v in values.tolist():
        if not math.isnan(v):
            total += v
            count += 1
    return total / count if count else float("nan")


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
    return json_clean(scores)
