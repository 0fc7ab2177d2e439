"""The FCN-score's measurement, with no output folder: label every photo with the scorer and count.

:func:`score` runs a scorer over the synthesized photos of a ``test.py`` results folder (or, with ``real=True``,
over the real val photos) under one protocol (:mod:`evaluation.protocols`) and returns a :class:`Scored`: the
confusion matrix summed over all frames, the per-frame figures (pixel accuracy, PSNR/SSIM against the real photo)
and a few sample frames for a report. Nothing is written; :func:`evaluation.summary.summarize` turns a
:class:`Scored` into the results dict and :func:`evaluation.reports.write_reports` writes it. Usable from Python::

    from evaluation.scoring import score
    from evaluation.summary import summarize

    scored = score("results/NAME/val_latest", "cityscapes", "scorer.pth", device="cpu")
    scored.confusion                     # (C, C) int64, rows: ground truth, columns: prediction
    summarize(scored)["scores"]          # {"per_pixel_acc": ..., "per_class_acc": ..., "class_iou": ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluation import protocols as P
from evaluation.common import (EvaluationError, check_int, list_label_frames, load_rgb, load_train_ids, photo_path,
                               require_cityscapes_split, resolve_device)
from evaluation.frames import find_fake_frames, match_frames
from evaluation.metrics import confusion_matrix
from evaluation.protocols import PROTOCOLS
from evaluation.scorer import Scorer, load_scorer

PSNR_CAP = 100.0


@dataclass
class Scored:
    """What :func:`score` measured. ``confusion`` is ``(K, K)`` with ``K = scorer.outputs`` (20 for the pix2pix
    FCN-8s, whose 20th channel is a prediction column of no class; its rows >= 19 stay empty)."""
    scorer: Scorer
    protocol: str
    eval_size: int
    real: bool
    real_size: int
    split: str
    result_dir: str | None
    cityscapes_dir: Path
    frame_ids: list[str]
    num_gt_frames: int
    #: (width, height) of the scored photos before any protocol resize (for ``real``: the size they were resized to)
    synthesized_size: tuple[int, int]
    allow_any_size: bool
    confusion: np.ndarray
    #: ``[{"frame", "pixel_acc", "psnr", "ssim"}]`` in frame order
    frames: list[dict]
    #: the first ``num_samples`` frames: ``{"frame", "photo" (uint8 HxWx3), "pred", "gt" (train ids)}``
    samples: list[dict] = field(default_factory=list)
    #: the pix2pix FCN-8s only: the official evaluator's histogram, the frames it drops, the 20th-channel pixels
    confusion_official: np.ndarray | None = None
    official_dropped: list[str] = field(default_factory=list)
    extra_pixels: int = 0

    @property
    def official(self) -> bool:
        """True for the pix2pix authors' FCN-8s, whose official arithmetic is recorded beside ours."""
        return self.confusion_official is not None


class _Frames(torch.utils.data.Dataset):
    """One item per frame: the scorer's input, the ground truth at the comparison size, PSNR/SSIM."""

    def __init__(self, frame_ids, fake, gt, cityscapes_dir, split, protocol, eval_size, real, real_size, mean, std,
                 convention="rgb01"):
        self.frame_ids, self.fake, self.gt = list(frame_ids), fake, gt
        self.cityscapes_dir, self.split = Path(cityscapes_dir), split
        self.protocol, self.eval_size, self.real, self.real_size = protocol, eval_size, real, real_size
        self.mean, self.std, self.convention = mean, std, convention

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, i: int) -> dict:
        # Errors travel back as text: an exception raised in a DataLoader worker would reach the user wrapped
        # in a worker traceback instead of one clear sentence.
        try:
            return self._load(i)
        except EvaluationError as exc:
            return {"index": i, "error": str(exc)}


    def _load(self, i: int) -> dict:
        frame = self.frame_ids[i]
        real_path = photo_path(self.cityscapes_dir, self.split, frame)
        psnr = ssim = None
        if self.real:
            if not real_path.is_file():
                raise EvaluationError(f"--real needs the real photo {real_path}, which does not exist")
            photo = load_rgb(real_path).resize((self.real_size, self.real_size), Image.BICUBIC)
        else:
            photo = load_rgb(self.fake[frame])
            if real_path.is_file():
                psnr, ssim = photo_similarity(photo, load_rgb(real_path))
        if self.protocol == "256":
            gt = load_train_ids(self.gt[frame], size=(self.eval_size, self.eval_size))
        else:
            gt = load_train_ids(self.gt[frame])
        size = P.protocol_input_size(self.protocol, photo.size, (gt.shape[1], gt.shape[0]), self.eval_size)
        display = photo
        if photo.size != size:
            photo = photo.resize(size, Image.BILINEAR)  # uint8 in, uint8 out, like scipy.misc.imresize
        return {"index": i, "input": P.scorer_input(photo, self.convention, self.mean, self.std),
                "gt": torch.from_numpy(gt), "display": np.asarray(display), "psnr": psnr, "ssim": ssim}


def photo_similarity(fake: Image.Image, real: Image.Image) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a synthesized photo against the real one resized (bicubic) to its size.

    Identical images would have infinite PSNR; it is capped at ``PSNR_CAP`` (100 dB) so the JSON stays valid.
    SSIM uses a 7x7 window (smaller for tiny images), colour channels averaged."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = np.asarray(real.resize(fake.size, Image.BICUBIC))
    b = np.asarray(fake)
    psnr = PSNR_CAP if np.array_equal(a, b) else float(peak_signal_noise_ratio(a, b, data_range=255))
    win = min(7, min(b.shape[:2]) // 2 * 2 - 1)
    ssim = float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=max(win, 3)))
    return min(psnr, PSNR_CAP), ssim


def _collate(items: list[dict]) -> list[dict]:
    return items


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read image {path}: {exc}") from None


def check_score_options(*, eval_size: int | None = None, real_size: int | None = None, batch_size: int = 4,
                        num_workers: int = 0, num_samples: int = 8) -> None:
    """The numeric options of :func:`score`, each refused in one sentence naming its flag when impossible."""
    for flag, size in (("--eval_size", eval_size), ("--real_size", real_size)):
        if size is not None:
            check_int(size, flag, 1, "a positive integer (a square size in pixels, e.g. 256)")
            if size < 16:
                raise EvaluationError(f"{flag} {size} is too small; use 16 or more (256 is the paper's)")
    check_int(batch_size, "--batch_size", 1, "at least 1")
    check_int(num_workers, "--num_workers", 0, "0 (load in this process) or more")
    check_int(num_samples, "--num_samples", 0, "0 (no sample frames in the report) or more")


def score(result_dir: str | Path | None, cityscapes_dir: str | Path, scorer: str | Path | Scorer, *,
          protocol: str | None = None, real: bool = False, split: str = "val", eval_size: int | None = None,
          real_size: int | None = None, batch_size: int = 4, device: str | None = "auto", num_workers: int = 0,
          allow_subset: bool = False, num_samples: int = 8, allow_any_size: bool = False,
          pix2pix_compat: bool = False, progress: bool = True) -> Scored:
    """Label the synthesized (or, with ``real=True``, the real) photos and count; returns a :class:`Scored`.

    ``scorer`` is a path (a ``train_scorer`` checkpoint, the pix2pix authors' ``fcn-8s-cityscapes.caffemodel`` or
    fyu/drn's ``drn-d-105_ms_cityscapes.pth``) or a loaded :class:`~evaluation.scorer.Scorer`. ``protocol``
    (see :mod:`evaluation.protocols`; default: ``drn`` for DRN-D-105, else ``pix2pix``). ``real_size`` (default:
    the scorer's training size, 256 for the published scorers) is the square size real photos are resized to
    before the protocol applies; ``eval_size`` (default: the same) is the comparison size of ``protocol="256"``.
    Synthesized photos must all have one size that a generator can produce (square or the label maps' aspect,
    >= 32 pixels); ``allow_any_size`` scores other sizes with a warning. ``pix2pix_compat`` says which arithmetic
    :func:`~evaluation.summary.summarize` will headline; it is checked here, before any frame is scored (the
    ``drn`` protocol has its own). Nothing is written.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise EvaluationError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    check_score_options(eval_size=eval_size, real_size=real_size, batch_size=batch_size, num_workers=num_workers,
                        num_samples=num_samples)
    if result_dir is None and not real:
        raise EvaluationError("--result_dir is required (the folder test.py wrote, e.g. results/NAME/val_latest) "
                              "unless --real scores the real photos")
    cityscapes_dir = require_cityscapes_split(cityscapes_dir, split, need_photos=real)
    dev = resolve_device(device)
    if not isinstance(scorer, Scorer):
        scorer = load_scorer(scorer, dev)
    else:
        scorer.model.to(dev).eval()
    protocol = protocol or P.default_protocol(scorer)
    P.check_protocol(scorer, protocol, pix2pix_compat)
    fake = find_fake_frames(result_dir) if result_dir is not None else None
    gt = list_label_frames(cityscapes_dir, split)
    if not gt:
        raise EvaluationError(f"--cityscapes_dir {cityscapes_dir}/gtFine/{split} holds no *_gtFine_labelIds.png")
    frame_ids = match_frames(fake, gt, result_dir=result_dir, cityscapes_dir=cityscapes_dir, split=split,
                             allow_subset=allow_subset)
    real_size = int(real_size or scorer.image_size)
    eval_size = int(eval_size or scorer.image_size)
    if real:
        synthesized_size = (real_size, real_size)
    else:
        synthesized_size = P.check_synthesized_sizes({f: _image_size(fake[f]) for f in frame_ids},
                                                     _image_size(gt[frame_ids[0]]), protocol,
                                                     allow_any_size=allow_any_size, where=f"--result_dir {result_dir}")
    data = _Frames(frame_ids, fake, gt, cityscapes_dir, split, protocol, eval_size, real, real_size,
                   scorer.mean, scorer.std, scorer.input_convention)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=_collate, pin_memory=dev.type == "cuda")
    num_classes = len(scorer.class_names)
    outputs = scorer.outputs  # > num_classes for the FCN-8s: its 20th channel is a prediction column of no class
    official = scorer.kind == "caffe_fcn8s"
    conf = np.zeros((outputs, outputs), dtype=np.int64)
    conf_official = np.zeros((num_classes, num_classes), dtype=np.int64)
    dropped: list[str] = []
    extra_pixels = 0
    per_frame: list[dict] = [None] * len(data)  # type: ignore[list-item]
    samples: list[dict] = []
    from tqdm import tqdm

    bar = tqdm(total=len(data), desc=f"FCN-score ({protocol})", unit="frame", disable=not progress)
    for items in loader:
        by_shape: dict[tuple, list[dict]] = {}
        for item in items:
            if "error" in item:
                raise EvaluationError(item["error"])
            by_shape.setdefault((tuple(item["input"].shape), tuple(item["gt"].shape)), []).append(item)
        for group in by_shape.values():
            label_size = (group[0]["gt"].shape[1], group[0]["gt"].shape[0])
            preds = P.predict(scorer, protocol, torch.stack([it["input"] for it in group]), label_size)
            for it, pred in zip(group, preds):
                gt_t = it["gt"].to(pred.device)
                frame_conf = confusion_matrix(gt_t, pred, outputs)
                conf += frame_conf
                frame = frame_ids[it["index"]]
                if official:
                    extra_pixels += int(frame_conf[:num_classes, num_classes:].sum())
                    hist = P.official_fast_hist(it["gt"].numpy(), pred.cpu().numpy(), num_classes)
                    if hist is None:
                        dropped.append(frame)
                    else:
                        conf_official += hist
                total = frame_conf.sum()
                per_frame[it["index"]] = {
                    "frame": frame,
                    "pixel_acc": float(np.trace(frame_conf) / total) if total else None,
                    "psnr": it["psnr"], "ssim": it["ssim"]}
                if it["index"] < num_samples:
                    samples.append({"frame": frame, "photo": it["display"],
                                    "pred": pred.clamp(max=255).to(torch.uint8).cpu().numpy(),
                                    "gt": it["gt"].numpy()})
        bar.update(len(items))
    bar.close()
    return Scored(scorer=scorer, protocol=protocol, eval_size=eval_size, real=bool(real), real_size=real_size,
                  split=split, result_dir=str(result_dir) if result_dir is not None else None,
                  cityscapes_dir=cityscapes_dir, frame_ids=frame_ids, num_gt_frames=len(gt),
                  synthesized_size=tuple(synthesized_size), allow_any_size=bool(allow_any_size), confusion=conf,
                  frames=per_frame, samples=samples, confusion_official=conf_official if official else None,
                  official_dropped=dropped, extra_pixels=extra_pixels)
