"""From what :func:`evaluation.scoring.score` measured to the results dict of ``evaluation_results.json``.

:func:`summarize` reads the three FCN-scores off the summed confusion matrix under every absent-class convention
(:data:`evaluation.metrics.CONVENTIONS`; one of them is the headline ``scores``), adds the per-class table, the
majority-class baseline, GAN Compression's mIoU under ``--protocol drn``, mean PSNR/SSIM, the pix2pix FCN-8s'
official arithmetic, and the provenance (protocol, sizes, scorer and its sha256, frame counts). The dict is
JSON-clean (NaN as null). A new figure (another scorer's metric, FID) is one more key here and one more line in
:mod:`evaluation.reports`.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path

import numpy as np

from evaluation import protocols as P
from evaluation.metrics import CONVENTIONS, majority_confusion, segmentation_scores
from evaluation.scoring import Scored
from pix2pix_tr.cli import json_clean

#: The paper's three columns, in its order.
THREE = ("per_pixel_acc", "per_class_acc", "class_iou")


def default_label(scored: Scored) -> str:
    """``GT`` for real photos, else the run's name (the folder above ``results/NAME/val_latest``)."""
    if scored.real:
        return "GT"
    result_dir = Path(scored.result_dir)
    return result_dir.resolve().parent.name or result_dir.name


def summarize(scored: Scored, *, pix2pix_compat: bool = False, label: str | None = None,
              fid: dict | None = None) -> dict:
    """The results dict (what ``evaluation_results.json`` holds) of a :class:`~evaluation.scoring.Scored`.

    ``pix2pix_compat`` picks which convention for classes absent from the ground truth gives the headline
    ``scores``: cityscapesScripts' by default, the original pix2pix's with ``pix2pix_compat`` (with the pix2pix
    FCN-8s, that evaluator's arithmetic entire); every convention's scores are in the dict. ``label`` names the
    row in ``compare_runs`` (default: :func:`default_label`). ``fid``: what :func:`evaluation.fid.fid_kid` returned
    for the same photos, or None; its ``fid``, ``kid_mean`` and ``kid_std`` become top-level keys, the rest
    ``fid_details``.
    """
    scorer, conf, protocol = scored.scorer, scored.confusion, scored.protocol
    num_classes = len(scorer.class_names)
    official = scored.official

    def scores_of(matrix: np.ndarray, convention: str) -> dict:
        names = list(scorer.class_names) + [f"(channel {i})" for i in range(num_classes, len(matrix))]
        s = segmentation_scores(matrix, convention=convention, class_names=names)
        return P.restrict_scores(s, num_classes) if len(matrix) > num_classes else s

    every = {c: scores_of(scored.confusion_official if official and c == "pix2pix" else conf, c)
             for c in CONVENTIONS}
    headline = every["pix2pix" if pix2pix_compat else "cityscapes"]
    base_conf, majority = majority_confusion(conf)  # rows >= num_classes are empty: never the majority
    base_conf = base_conf[:num_classes, :num_classes]
    base = segmentation_scores(base_conf, pix2pix_compat=pix2pix_compat, class_names=scorer.class_names)
    psnrs = [f["psnr"] for f in scored.frames if f["psnr"] is not None]
    ssims = [f["ssim"] for f in scored.frames if f["ssim"] is not None]
    if label is None:
        label = default_label(scored)
    results = {
        "label": label,
        "scores": {k: headline[k] for k in THREE},
        "convention": headline["convention"],
        **{f"scores_{c}": {k: every[c][k] for k in THREE} for c in CONVENTIONS},
        "miou": P.gan_compression_miou(conf[:num_classes, :num_classes]) if protocol == "drn" else None,
        "per_class": [
            {"name": name, "accuracy": headline["per_class_accuracy"][i], "iou": headline["per_class_iou"][i],
             "gt_pixels": int(headline["class_pixels"][i]), "present": bool(headline["class_present"][i])}
            for i, name in enumerate(scorer.class_names)],
        "majority_baseline": {"class": majority, "class_name": scorer.class_names[majority],
                              **{k: base[k] for k in THREE}},
        "psnr_mean": float(np.mean(psnrs)) if psnrs else None,
        "ssim_mean": float(np.mean(ssims)) if ssims else None,
        "protocol": protocol,
        "protocol_detail": P.describe(protocol, scorer, scored.eval_size),
        "eval_size": scored.eval_size if protocol == "256" else None,
        "synthesized_size": list(scored.synthesized_size),
        "allow_any_size": bool(scored.allow_any_size),
        "real": bool(scored.real),
        "real_size": scored.real_size if scored.real else None,
        "scorer": scorer.describe(),
        "result_dir": scored.result_dir,
        "cityscapes_dir": str(scored.cityscapes_dir),
        "split": scored.split,
        "num_frames": len(scored.frame_ids),
        "num_gt_frames": scored.num_gt_frames,
        "confusion_matrix": conf[:num_classes].tolist(),
        "frames": scored.frames,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if fid is not None:
        results.update({key: fid[key] for key in ("fid", "kid_mean", "kid_std")})
        results["fid_details"] = {k: v for k, v in fid.items() if k not in ("fid", "kid_mean", "kid_std")}
    if official:
        dropped = scored.official_dropped
        results["extra_channel"] = {
            "pixels": scored.extra_pixels,
            "note": (f"pixels whose argmax was a score channel >= {num_classes}; the default scores count them as "
                     f"errors of their true class, the official arithmetic as class a+1 predicted as "
                     f"{scorer.class_names[0]} (and drops a frame where one falls on {scorer.class_names[-1]})"),
            "official_dropped_frames": dropped,
        }
        results["confusion_matrix_official"] = scored.confusion_official.tolist()
        if dropped and pix2pix_compat:
            warnings.warn(f"--pix2pix_compat: the official arithmetic dropped {len(dropped)} frame(s) (e.g. "
                          f"{dropped[0]}) because the FCN-8s predicted its 20th channel on a "
                          f"{scorer.class_names[-1]} pixel; the default arithmetic keeps them", stacklevel=2)
    return json_clean(results)
