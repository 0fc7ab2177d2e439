"""How ``fcn_score`` feeds photos to a scorer and reads its answer: the protocols, their input conventions,
the synthesized-size checks, and the published evaluators' arithmetic.

==================== ===================================================================================
``pix2pix``          The official pix2pix evaluator (``scripts/eval_cityscapes/evaluate.py``): the photo is
                     resized to the label map's size with Pillow's bilinear filter on the uint8 image (what
                     its ``scipy.misc.imresize(im, (H, W))`` did), labelled there, compared at full size. With
                     the pix2pix authors' FCN-8s: RGB -> BGR, minus ``(72.78044, 83.21195, 73.45286)``, argmax
                     over all 20 score channels.
``256``              Ours, for trained scorers: photo and labels resized to ``eval_size`` squared.
``drn``              GAN Compression's ``metric/mIoU_score.py``, with DRN-D-105: the photo at its own size,
                     ``rgb / 255`` normalised with fyu/drn's Cityscapes mean and std, DRN's log-probabilities
                     resized per channel (bilinear) to the label size (2048x1024 on real Cityscapes), argmax;
                     mIoU = nanmean over classes of ``tp / (gt + pred - tp)`` (a class with no GT and no
                     prediction is NaN and left out), x100.
==================== ===================================================================================

The FCN-8s' 20th channel (index 19, a class the 19 train ids do not have) can win the argmax. The official
``fast_hist(a, b, n=19)`` bins ``n * gt + pred``: a prediction of 19 on a pixel of true class ``a`` lands in
``(a + 1, 0)`` (counted as true class a+1 predicted as road), and on a pixel of true class 18 (bicycle) it makes
``bincount`` longer than ``n * n``, whereupon ``fast_hist`` returns 0 and the whole frame is dropped from the
histogram. By default we count such a pixel as an error of its true class instead (a 20th prediction column
that belongs to no class); ``pix2pix_compat`` reproduces the official arithmetic, dropped frames included (their
number is recorded).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.common import EvaluationError

PROTOCOLS = ("pix2pix", "256", "drn")
#: The smallest side a synthesized photo may have without ``--allow_any_size``.
MIN_SIDE = 32

_ALLOWED = {"trained": ("pix2pix", "256"), "caffe_fcn8s": ("pix2pix",), "drn_d_105": ("drn",)}


def default_protocol(scorer) -> str:
    """The protocol a scorer is published with: ``drn`` for DRN-D-105, ``pix2pix`` otherwise."""
    return "drn" if scorer.kind == "drn_d_105" else "pix2pix"


def check_protocol(scorer, protocol: str, pix2pix_compat: bool) -> None:
    """Refuse a protocol the scorer was not made for, and ``--pix2pix_compat`` outside the pix2pix arithmetic."""
    allowed = _ALLOWED[scorer.kind]
    if protocol not in allowed:
        what = {"trained": "a scorer trained by evaluation.train_scorer", "caffe_fcn8s": "the pix2pix FCN-8s",
                "drn_d_105": "DRN-D-105"}[scorer.kind]
        raise EvaluationError(f"--protocol {protocol} does not fit --scorer {scorer.path} ({what}); use --protocol "
                              f"{' or '.join(allowed)}")
    if pix2pix_compat and protocol == "drn":
        raise EvaluationError("--pix2pix_compat reproduces the pix2pix evaluator's arithmetic, but --protocol drn "
                              "already uses GAN Compression's; drop --pix2pix_compat")


def describe(protocol: str, scorer, eval_size: int) -> str:
    if protocol == "drn":
        return ("DRN on the photo at its own size, log-probabilities resized (bilinear, per channel) to the label "
                "map size, argmax; mIoU = nanmean of per-class IoU x100 (GAN Compression)")
    if protocol == "pix2pix":
        extra = (", BGR minus the pix2pix mean, argmax over the FCN-8s' 20 channels"
                 if scorer.kind == "caffe_fcn8s" else "")
        return f"photo resized (bilinear) to the label map size, compared at full resolution{extra}"
    return f"photo resized to {eval_size}x{eval_size}, labels nearest-neighbour to {eval_size}x{eval_size}"


# ---------------------------------------------------------------------------------------------- inputs
def scorer_input(photo: Image.Image | np.ndarray, convention: str, mean: Sequence[float],
                 std: Sequence[float]) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> the network's float (3, H, W) input.

    ``rgb01``: ``(rgb / 255 - mean) / std``. ``bgr255``: the channels reversed to BGR, then ``- mean`` (mean in BGR
    order, 0-255), as the pix2pix evaluator's ``cityscapes.preprocess`` does for Caffe.
    """
    arr = np.asarray(photo, dtype=np.float32)
    if convention == "bgr255":
        arr = arr[:, :, ::-1] - np.asarray(mean, dtype=np.float32)
    elif convention == "rgb01":
        arr = (arr / 255.0 - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    else:
        raise ValueError(f"unknown input convention {convention!r}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def protocol_input_size(protocol: str, photo_size: tuple[int, int], label_size: tuple[int, int],
                        eval_size: int) -> tuple[int, int]:
    """The (width, height) the photo is resized to before the scorer sees it."""
    if protocol == "drn":
        return photo_size
    if protocol == "pix2pix":
        return label_size
    return (eval_size, eval_size)


@contextlib.contextmanager
def full_fp32(enabled: bool = True) -> Iterator[None]:
    """Turn TF32 off for CUDA convolutions and matmuls inside the block (restored after).

    PyTorch lets cuDNN convolutions use TF32 on Ampere and newer GPUs by default; Caffe and fyu/drn computed in
    IEEE fp32, so the published scorers run with it off, and their argmax matches the original's.
    """
    if not enabled:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_finite_scores(scorer, out: torch.Tensor) -> None:
    """Refuse NaN/inf class scores: their argmax is class 0 (or arbitrary) everywhere, which would be published as
    a score near the majority-class baseline. One reduction and one host synchronisation per batch."""
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise EvaluationError(f"the scorer {scorer.path} gave {bad} non-finite (NaN/inf) class scores, so its labels "
                              f"would be meaningless; its weights or its input normalisation "
                              f"(mean {list(scorer.mean)}, std {list(scorer.std)}) are broken: train a new one "
                              f"with python -m evaluation.train_scorer, or pass another --scorer")


@torch.inference_mode()
def predict(scorer, protocol: str, batch: torch.Tensor, label_size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, h, w) network inputs -> (N, H, W) int64 predictions at the comparison size.

    ``drn``: the log-probabilities are resized to the label size ``(W, H)`` with bilinear interpolation (half-pixel
    centres, antialiased when shrinking: Pillow's ``BILINEAR`` on each float channel, which GAN Compression's
    ``resize_4d_tensor`` runs), then the argmax. Otherwise the argmax over every output channel. The published
    scorers run with TF32 off (:func:`full_fp32`). Non-finite class scores are refused (:func:`check_finite_scores`).
    """
    with full_fp32(scorer.kind != "trained"):
        out = scorer.model(batch.to(scorer.device, non_blocking=True))
    check_finite_scores(scorer, out)
    if protocol == "drn":
        w, h = label_size
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return out.argmax(dim=1)


# ---------------------------------------------------------------------------------------------- size checks
def check_synthesized_sizes(sizes: dict[str, tuple[int, int]], label_size: tuple[int, int], protocol: str, *,
                            allow_any_size: bool = False, where: str = "--result_dir") -> tuple[int, int]:
    """The one (width, height) of all synthesized photos; refuse mixed sizes and sizes no protocol produces.

    A pix2pix generator's Cityscapes photo is square (256x256 in pix2pix, the TR paper and GAN Compression) or, for
    a run that kept the aspect ratio, has the label maps' aspect ratio; each side at least :data:`MIN_SIDE`.
    Anything else (17x33, 1000x4) is refused, or scored with a loud warning under ``allow_any_size``.
    """
    distinct: dict[tuple[int, int], str] = {}
    for frame, size in sizes.items():
        distinct.setdefault(tuple(size), frame)
    if len(distinct) > 1:
        shown = "; ".join(f"{w}x{h} ({frame})" for (w, h), frame in list(distinct.items())[:3])
        raise EvaluationError(f"{where} mixes photo sizes ({shown}); score the output of one test.py run, whose "
                              f"photos all have one size")
    (w, h), = distinct
    lw, lh = label_size
    square = w == h
    label_aspect = w * lh == h * lw
    if (square or label_aspect) and min(w, h) >= MIN_SIDE:
        return w, h
    why = (f"its photos are {w}x{h}, which is neither square (pix2pix's 256x256) nor the label maps' aspect "
           f"({lw}x{lh})" if not (square or label_aspect) else
           f"its photos are {w}x{h}, smaller than {MIN_SIDE} pixels on a side")
    if not allow_any_size:
        raise EvaluationError(f"{where}: {why}, so they cannot be a generator's output under --protocol {protocol}; "
                              f"rerun test.py with --load_size 256 --crop_size 256, or pass --allow_any_size to score "
                              f"them anyway")
    warnings.warn(f"{where}: {why}; scoring them anyway because of --allow_any_size (the scores are not "
                  f"comparable with published ones)", stacklevel=2)
    return w, h


# ---------------------------------------------------------------------------------------------- arithmetic
def official_fast_hist(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray | None:
    """The pix2pix evaluator's ``fast_hist(gt, pred, n)`` (``scripts/eval_cityscapes/util.py``), or None where it
    returns 0 and the frame is dropped (a prediction ``>= n`` on a pixel of class ``n - 1`` makes ``bincount``
    longer than ``n * n``). Ground-truth pixels outside ``[0, n)`` (255) are skipped; predictions are not checked."""
    a = np.asarray(gt).reshape(-1).astype(np.int64)
    b = np.asarray(pred).reshape(-1).astype(np.int64)
    k = (a >= 0) & (a < n)
    counts = np.bincount(n * a[k] + b[k], minlength=n * n)
    if len(counts) != n * n:
        return None
    return counts.reshape(n, n)


def restrict_scores(scores: dict, num_classes: int) -> dict:
    """``segmentation_scores`` of a (K, K) matrix whose classes ``>= num_classes`` only ever appear as predictions
    (the FCN-8s' 20th channel), restricted to the first ``num_classes``: their per-class accuracy and IoU are
    already right (the extra column counts against the true class), the means are retaken over the first
    ``num_classes`` entries that are not NaN (the same rule ``segmentation_scores`` applies)."""
    out = dict(scores)
    for key in ("per_class_accuracy", "per_class_iou", "class_present", "class_pixels"):
        out[key] = np.asarray(scores[key])[:num_classes]
    out["class_names"] = list(scores["class_names"])[:num_classes]
    out["num_present"] = int(np.sum(out["class_present"]))
    for mean_key, key in (("per_class_acc", "per_class_accuracy"), ("class_iou", "per_class_iou")):
        values = np.asarray(out[key], dtype=np.float64)
        out[mean_key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def gan_compression_miou(confusion: np.ndarray) -> float:
    """GAN Compression's mIoU: ``nanmean(diag / (rows + cols - diag)) * 100`` over the classes (a class with no
    ground truth and no prediction is 0/0 = NaN and left out; one predicted but absent from the ground truth
    counts 0). Rows are ground truth, columns predictions."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan")
