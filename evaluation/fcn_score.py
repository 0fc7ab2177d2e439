"""The FCN-score of synthesized Cityscapes photos (pix2pix labels->photo), as in the pix2pix and TRAdam papers.

A scorer network (see :mod:`evaluation.scorer`, trained by :mod:`evaluation.train_scorer`) labels every
synthesized photo ``{result_dir}/images/{city}_{seq}_{frame}_fake_B.png`` (what ``test.py`` writes); the labels
are compared with ``{cityscapes_dir}/gtFine/val/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png``, the maps the
photos were synthesized from. If the generator painted a convincing "car" where the label map says car, the
scorer finds a car there. The three numbers (per-pixel accuracy, per-class accuracy, class IoU; see
:mod:`evaluation.metrics`) are then read off one confusion matrix summed over all frames.

The scorer (``--scorer``) is a ``train_scorer`` checkpoint, the pix2pix authors' ``fcn-8s-cityscapes.caffemodel``
or fyu/drn's ``drn-d-105_ms_cityscapes.pth`` (:mod:`evaluation.scorer`). Protocols (``--protocol``; details in
:mod:`evaluation.protocols`):

* ``pix2pix`` (default, the original evaluator): the photo is upsampled (bilinear) to the label map's size
  (2048x1024 for real Cityscapes), labelled there, and compared at full resolution. With the FCN-8s: BGR minus
  the pix2pix mean, argmax over its 20 channels.
* ``256``: the photo is resized to ``eval_size`` x ``eval_size`` (default: the scorer's training size, 256 in
  the paper's recipe; usually a no-op for pix2pix output) and compared with the labels resized
  nearest-neighbour to the same size. Cheaper; it is also what ``train_scorer`` reports for its GT row.
* ``drn`` (default for DRN-D-105, GAN Compression's): DRN at the photo's size, log-probabilities resized to the
  label size, argmax; the results add ``miou`` (x100).

The synthesized photos must share one size that a generator run produces (see
:func:`evaluation.protocols.check_synthesized_sizes`; ``--allow_any_size`` overrides with a warning); it is
recorded as ``synthesized_size`` ([width, height]).

``--real`` scores the real val photos instead, resized (bicubic) to the scorer's training size first, like the
generator's output: the "GT" row of the paper's table, the upper bound a synthesized photo can reach.

Every frame on one side must exist on the other: a synthesized frame without ground truth, or a ground-truth
frame without a synthesized photo, is an error that lists them (``--allow_subset`` accepts fewer synthesized
frames than ground-truth ones, e.g. after ``test.py --num_test 50``; the count is recorded).

Outputs in ``output_dir``: ``evaluation_results.json`` (everything, including the confusion matrix, the
scores under each convention for classes absent from the ground truth (``scores_cityscapes``, the default and
cityscapesScripts' exact arithmetic; ``scores_gt_classes``; ``scores_pix2pix``), the majority-class baseline,
per-frame PSNR/SSIM, the protocol, the scorer path and its sha256), ``evaluation_results.txt`` (the original
evaluator's layout) and ``index.html`` with ``samples/`` (photo, predicted labels, ground truth).

Command line::

    python -m evaluation.fcn_score --result_dir results/NAME/val_latest --cityscapes_dir DIR \\
        --scorer scorer.pth --output_dir eval/NAME [--protocol pix2pix|256|drn] [--real]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from evaluation import protocols as P
from evaluation.common import (FRAME_RE, EvaluationError, MissingFramesError, list_label_frames, load_rgb,
                               load_train_ids, photo_path, require_cityscapes_split, resolve_device, run_cli)
from evaluation.labels import train_ids_to_color
from evaluation.metrics import CONVENTIONS, confusion_matrix, majority_confusion, segmentation_scores
from evaluation.protocols import PROTOCOLS
from evaluation.scorer import Scorer, load_scorer
from pix2pix_tr.cli import json_clean
from pix2pix_tr.io import atomic_save_image, atomic_write_text
FAKE_SUFFIXES = ("_fake_B.png", "_fake_B.jpg")
RESULTS_JSON = "evaluation_results.json"
RESULTS_TXT = "evaluation_results.txt"
PSNR_CAP = 100.0


# ---------------------------------------------------------------------------------------------- frame matching
def find_fake_frames(result_dir: str | Path) -> dict[str, Path]:
    """``{frame_id: path}`` of the synthesized photos in ``result_dir/images/`` (or ``result_dir`` itself)."""
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise EvaluationError(f"--result_dir {result_dir} does not exist; run python test.py --dataroot DIR --name "
                              f"NAME first and pass results/NAME/val_latest")
    images = result_dir / "images" if (result_dir / "images").is_dir() else result_dir
    frames: dict[str, Path] = {}
    for path in sorted(images.iterdir()):
        for suffix in FAKE_SUFFIXES:
            if path.name.endswith(suffix):
                frames[path.name[: -len(suffix)]] = path
    # test.py's results.json names the frames of its latest run: images left in the folder by an earlier run
    # (a larger --num_test, another checkpoint) must not be scored with them.
    listing = result_dir / "results.json"
    if listing.is_file():
        try:
            stems = set(json.loads(listing.read_text(encoding="utf-8"))["stems"])
        except (ValueError, KeyError, TypeError):
            raise EvaluationError(f"{listing} is not a results.json written by test.py; rerun test.py or remove "
                                  f"it") from None
        frames = {stem: path for stem, path in frames.items() if stem in stems}
    if not frames:
        raise EvaluationError(f"--result_dir {result_dir} holds no *_fake_B.png images (looked in {images}); "
                              f"pass the folder test.py wrote, e.g. results/NAME/val_latest")
    return frames


def _listing(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def match_frames(fake: dict[str, Path] | None, gt: dict[str, Path], *, result_dir: Any, cityscapes_dir: Any,
                 split: str, allow_subset: bool) -> list[str]:
    """The frame ids to score; a frame missing on either side raises :class:`MissingFramesError` listing them."""
    if fake is None:
        return sorted(gt)
    missing_gt = sorted(set(fake) - set(gt))
    if missing_gt and not any(FRAME_RE.match(frame) for frame in fake):
        raise MissingFramesError(
            f"the synthesized photos in {result_dir} are named like {missing_gt[0]}_fake_B.png, not by Cityscapes "
            f"frame (city_000000_000019), so their ground truth cannot be found; the official pix2pix preparation "
            f"numbers its files, so re-prepare the data with python datasets/prepare_cityscapes_dataset.py "
            f"--gtFine_dir DIR/gtFine --leftImg8bit_dir DIR/leftImg8bit --output_dir NEW (it keeps the frame names) "
            f"and rerun test.py with --dataroot NEW", missing_gt=missing_gt)
    missing_fake = [] if allow_subset else sorted(set(gt) - set(fake))
    if missing_gt or missing_fake:
        parts = []
        if missing_gt:
            parts.append(f"{len(missing_gt)} synthesized frame(s) in {result_dir} have no ground truth "
                         f"{cityscapes_dir}/gtFine/{split}/CITY/*_gtFine_labelIds.png: {_listing(missing_gt)}")
        if missing_fake:
            parts.append(f"{len(missing_fake)} ground-truth frame(s) in {cityscapes_dir}/gtFine/{split} have no "
                         f"*_fake_B.png in {result_dir}: {_listing(missing_fake)} (run test.py on the whole "
                         f"split, or pass --allow_subset to score only the synthesized ones)")
        raise MissingFramesError("; ".join(parts), missing_fake=missing_fake, missing_gt=missing_gt)
    return sorted(fake)


# ---------------------------------------------------------------------------------------------- the data
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


# ---------------------------------------------------------------------------------------------- scoring
def fcn_score(result_dir: str | Path | None, cityscapes_dir: str | Path, scorer: str | Path | Scorer,
              output_dir: str | Path, *, protocol: str | None = None, real: bool = False, split: str = "val",
              eval_size: int | None = None, real_size: int | None = None, batch_size: int = 4,
              device: str | None = "auto",
              num_workers: int = 0, allow_subset: bool = False, num_samples: int = 8, pix2pix_compat: bool = False,
              label: str | None = None, progress: bool = True, allow_any_size: bool = False) -> dict:
    """Score synthesized (or, with ``real=True``, real) val photos; write the reports; return the results dict.

    ``scorer`` is a path (a ``train_scorer`` checkpoint, the pix2pix authors' ``fcn-8s-cityscapes.caffemodel`` or
    fyu/drn's ``drn-d-105_ms_cityscapes.pth``) or a loaded :class:`~evaluation.scorer.Scorer`. ``protocol``
    (see :mod:`evaluation.protocols`; default: ``drn`` for DRN-D-105, else ``pix2pix``). ``real_size`` (default:
    the scorer's training size, 256 for the published scorers) is the square size real photos are resized to
    before the protocol applies; ``eval_size`` (default: the same) is the comparison size of ``protocol="256"``.
    ``pix2pix_compat`` picks which convention for classes absent from the ground truth gives the headline
    ``scores``: cityscapesScripts' by default, the original pix2pix's with ``pix2pix_compat`` (with the pix2pix
    FCN-8s, that evaluator's arithmetic entire); every convention's scores are in the JSON. Synthesized photos must all have one size that a generator can produce (square or the label maps'
    aspect, >= 32 pixels); ``allow_any_size`` scores other sizes with a warning. ``label`` names the row in
    ``compare_runs`` (default ``GT`` for real photos, else the name of the run folder). Returns the dict written
    to ``evaluation_results.json``.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise EvaluationError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if eval_size is not None and eval_size < 16:
        raise EvaluationError(f"--eval_size {eval_size} is too small; use 16 or more (256 is the paper's)")
    if batch_size < 1:
        raise EvaluationError(f"--batch_size {batch_size} must be at least 1")
    if num_workers < 0:
        raise EvaluationError(f"--num_workers {num_workers} must be 0 (load in this process) or more")
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

    def scores_of(matrix: np.ndarray, convention: str) -> dict:
        names = list(scorer.class_names) + [f"(channel {i})" for i in range(num_classes, len(matrix))]
        s = segmentation_scores(matrix, convention=convention, class_names=names)
        return P.restrict_scores(s, num_classes) if len(matrix) > num_classes else s

    every = {c: scores_of(conf_official if official and c == "pix2pix" else conf, c) for c in CONVENTIONS}
    headline = every["pix2pix" if pix2pix_compat else "cityscapes"]
    base_conf, majority = majority_confusion(conf)  # rows >= num_classes are empty: never the majority
    base_conf = base_conf[:num_classes, :num_classes]
    base = segmentation_scores(base_conf, pix2pix_compat=pix2pix_compat, class_names=scorer.class_names)
    psnrs = [f["psnr"] for f in per_frame if f["psnr"] is not None]
    ssims = [f["ssim"] for f in per_frame if f["ssim"] is not None]
    if label is None:
        label = "GT" if real else (Path(result_dir).resolve().parent.name or Path(result_dir).name)
    three = ("per_pixel_acc", "per_class_acc", "class_iou")
    results = {
        "label": label,
        "scores": {k: headline[k] for k in three},
        "convention": headline["convention"],
        **{f"scores_{c}": {k: every[c][k] for k in three} for c in CONVENTIONS},
        "miou": P.gan_compression_miou(conf[:num_classes, :num_classes]) if protocol == "drn" else None,
        "per_class": [
            {"name": name, "accuracy": headline["per_class_accuracy"][i], "iou": headline["per_class_iou"][i],
             "gt_pixels": int(headline["class_pixels"][i]), "present": bool(headline["class_present"][i])}
            for i, name in enumerate(scorer.class_names)],
        "majority_baseline": {"class": majority, "class_name": scorer.class_names[majority],
                              **{k: base[k] for k in three}},
        "psnr_mean": float(np.mean(psnrs)) if psnrs else None,
        "ssim_mean": float(np.mean(ssims)) if ssims else None,
        "protocol": protocol,
        "protocol_detail": P.describe(protocol, scorer, eval_size),
        "eval_size": eval_size if protocol == "256" else None,
        "synthesized_size": list(synthesized_size),
        "allow_any_size": bool(allow_any_size),
        "real": bool(real),
        "real_size": real_size if real else None,
        "scorer": scorer.describe(),
        "result_dir": str(result_dir) if result_dir is not None else None,
        "cityscapes_dir": str(cityscapes_dir),
        "split": split,
        "num_frames": len(frame_ids),
        "num_gt_frames": len(gt),
        "confusion_matrix": conf[:num_classes].tolist(),
        "frames": per_frame,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if official:
        results["extra_channel"] = {
            "pixels": extra_pixels,
            "note": (f"pixels whose argmax was a score channel >= {num_classes}; the default scores count them as "
                     f"errors of their true class, the official arithmetic as class a+1 predicted as "
                     f"{scorer.class_names[0]} (and drops a frame where one falls on {scorer.class_names[-1]})"),
            "official_dropped_frames": dropped,
        }
        results["confusion_matrix_official"] = conf_official.tolist()
        if dropped and pix2pix_compat:
            warnings.warn(f"--pix2pix_compat: the official arithmetic dropped {len(dropped)} frame(s) (e.g. "
                          f"{dropped[0]}) because the FCN-8s predicted its 20th channel on a "
                          f"{scorer.class_names[-1]} pixel; the default arithmetic keeps them", stacklevel=2)
    results = json_clean(results)
    write_reports(results, samples, output_dir)
    return results


# ---------------------------------------------------------------------------------------------- reports
def _fmt(x: float | None) -> str:
    return "nan" if x is None else f"{x:f}"


def results_text(results: dict) -> str:
    """The original evaluator's ``evaluation_results.txt`` layout, then the run's provenance."""
    s = results["scores"]
    lines = [f"Mean pixel accuracy: {_fmt(s['per_pixel_acc'])}",
             f"Mean class accuracy: {_fmt(s['per_class_acc'])}",
             f"Mean class IoU: {_fmt(s['class_iou'])}",
             "************ Per class numbers below ************"]
    for row in results["per_class"]:
        lines.append(f"{row['name']:<15}: acc = {_fmt(row['accuracy'])}, iou = {_fmt(row['iou'])}")
    b = results["majority_baseline"]
    lines += ["************ Run details ************",
              f"protocol: {results['protocol']} ({results['protocol_detail']})",
              f"absent classes: {results['convention']}",
              f"frames: {results['num_frames']} of {results['num_gt_frames']} in gtFine/{results['split']}"
              + (" (real photos)" if results["real"] else ""),
              "synthesized size: {}x{}".format(*results["synthesized_size"])
              + (" (--allow_any_size)" if results.get("allow_any_size") else ""),
              f"scorer: {results['scorer']['path']} ({results['scorer']['arch']}, "
              f"sha256 {results['scorer']['sha256']})",
              f"majority-class baseline ({b['class_name']} everywhere): pixel {_fmt(b['per_pixel_acc'])}, "
              f"class {_fmt(b['per_class_acc'])}, IoU {_fmt(b['class_iou'])}"]
    if results.get("miou") is not None:
        lines.append(f"mIoU (GAN Compression, x100): {results['miou']:.2f}")
    extra = results.get("extra_channel")
    if extra:
        lines.append(f"20th-channel pixels: {extra['pixels']}; frames the official arithmetic drops: "
                     f"{len(extra['official_dropped_frames'])}")
    if results["psnr_mean"] is not None:
        lines.append(f"PSNR vs real photo: {results['psnr_mean']:.3f} dB; SSIM: {results['ssim_mean']:.4f}")
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: middle; }
.bar { background: #eee; width: 240px; height: 12px; }
.bar div { height: 12px; }
.big td { font-size: 1.3em; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; border: 1px solid #888; }
img { image-rendering: pixelated; }
.meta { color: #555; font-size: 0.9em; }
"""


def _bar(value: float | None, color: str):
    from dominate import tags

    outer = tags.div(cls="bar")
    if value is not None:
        outer.add(tags.div(style=f"width:{max(0.0, min(1.0, value)) * 100:.1f}%; background:{color}"))
    return outer


def write_reports(results: dict, samples: list[dict], output_dir: str | Path) -> None:
    """Write ``evaluation_results.json``, ``evaluation_results.txt``, ``index.html`` and ``samples/``."""
    import dominate
    from dominate import tags

    from evaluation.labels import TRAIN_PALETTE

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / RESULTS_TXT, results_text(results))

    sample_rows = []
    for sample in samples:
        h, w = sample["gt"].shape[:2]  # all three shown at the comparison's aspect ratio
        scale = min(1.0, 512 / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        names = {}
        for key, arr in (("photo", sample["photo"]), ("pred", train_ids_to_color(sample["pred"])),
                         ("gt", train_ids_to_color(sample["gt"]))):
            img = Image.fromarray(arr)
            if img.size != size:
                img = img.resize(size, Image.BILINEAR if key == "photo" else Image.NEAREST)
            names[key] = f"samples/{sample['frame']}_{key}.png"
            atomic_save_image(img, out / names[key])
        sample_rows.append((sample["frame"], names))

    s, b = results["scores"], results["majority_baseline"]
    doc = dominate.document(title=f"FCN-score: {results['label']}")
    with doc.head:
        tags.meta(charset="utf-8")
        tags.style(_CSS)
    with doc:
        tags.h1(f"FCN-score: {results['label']}")
        tags.p(f"{results['num_frames']} frames ({'real photos' if results['real'] else 'synthesized photos'}), "
               f"protocol {results['protocol']}: {results['protocol_detail']}. Classes absent from the ground "
               f"truth: {results['convention']} convention.", cls="meta")
        with tags.table(cls="big"):
            tags.tr(tags.th(""), tags.th("Per-pixel acc."), tags.th("Per-class acc."), tags.th("Class IOU"))
            tags.tr(tags.td(results["label"]), *[tags.td(_fmt3(s[k])) for k in ("per_pixel_acc", "per_class_acc",
                                                                                   "class_iou")])
            tags.tr(tags.td(f"majority class ({b['class_name']} everywhere)"),
                    *[tags.td(_fmt3(b[k])) for k in ("per_pixel_acc", "per_class_acc", "class_iou")])
        if results["psnr_mean"] is not None:
            tags.p(f"PSNR against the real photo: {results['psnr_mean']:.2f} dB, SSIM: {results['ssim_mean']:.3f} "
                   f"(mean over frames; real photo resized to the synthesized size).")
        tags.h2("Per class")
        with tags.table():
            tags.tr(tags.th("class"), tags.th("GT pixels"), tags.th("accuracy"), tags.th(""), tags.th("IoU"),
                    tags.th(""))
            for i, row in enumerate(results["per_class"]):
                color = "rgb({},{},{})".format(*TRAIN_PALETTE[i]) if i < len(TRAIN_PALETTE) else "#888"
                tags.tr(tags.td(tags.span(cls="swatch", style=f"background:{color}"), row["name"]),
                        tags.td(f"{row['gt_pixels']:,}"),
                        tags.td(_fmt3(row["accuracy"]) if row["accuracy"] is not None else "absent"),
                        tags.td(_bar(row["accuracy"], "#4a7")),
                        tags.td(_fmt3(row["iou"]) if row["iou"] is not None else "absent"),
                        tags.td(_bar(row["iou"], "#47a")))
        if sample_rows:
            tags.h2("Sample frames")
            frames = {f["frame"]: f for f in results["frames"]}
            with tags.table():
                tags.tr(tags.th("frame"), tags.th("photo"), tags.th("scorer's labels"), tags.th("ground truth"))
                for frame, names in sample_rows:
                    info = frames.get(frame, {})
                    caption = [frame, tags.br(), f"pixel acc {_fmt3(info.get('pixel_acc'))}"]
                    if info.get("psnr") is not None:
                        caption += [tags.br(), f"PSNR {info['psnr']:.2f} dB", tags.br(), f"SSIM {info['ssim']:.3f}"]
                    tags.tr(tags.td(*caption),
                            *[tags.td(tags.img(src=names[k], alt=k)) for k in ("photo", "pred", "gt")])
        sc = results["scorer"]
        how = (f"trained at {sc['image_size']}x{sc['image_size']}" if sc.get("kind", "trained") == "trained"
               else "published weights")
        tags.p(f"scorer {sc['path']} ({sc['arch']}, {how}), sha256 "
               f"{sc['sha256']}; created {results['created']}.", cls="meta")
    atomic_write_text(out / "index.html", doc.render())


def _fmt3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.fcn_score", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", help="folder test.py wrote (results/NAME/val_latest) holding images/*_fake_B.png")
    p.add_argument("--cityscapes_dir", required=True, help="Cityscapes root with gtFine/ (and leftImg8bit/)")
    p.add_argument("--scorer", required=True,
                   help="a checkpoint of python -m evaluation.train_scorer, the pix2pix authors' "
                        "fcn-8s-cityscapes.caffemodel, or fyu/drn's drn-d-105_ms_cityscapes.pth")
    p.add_argument("--output_dir", required=True, help="where the JSON, text and HTML reports go")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="pix2pix: compare at label resolution (the official pix2pix evaluator); 256: compare at "
                        "--eval_size (trained scorers); drn: GAN Compression's DRN-D-105 mIoU. Default: drn for "
                        "DRN-D-105, else pix2pix")
    p.add_argument("--eval_size", type=int, default=None,
                   help="comparison size of --protocol 256 (default: the scorer's training size, 256 normally)")
    p.add_argument("--real", action="store_true", help="score the real val photos (the GT row)")
    p.add_argument("--real_size", type=int, default=None,
                   help="square size real photos are resized to first (default: the scorer's training size)")
    p.add_argument("--split", default="val", help="Cityscapes split of the ground truth (default val)")
    p.add_argument("--allow_subset", action="store_true",
                   help="accept fewer synthesized frames than ground-truth frames (e.g. test.py --num_test)")
    p.add_argument("--pix2pix_compat", action="store_true",
                   help="headline scores with the original pix2pix's arithmetic (classes absent from the ground "
                        "truth count 0 in both means; with the FCN-8s caffemodel also its handling of the 20th "
                        "channel); default: cityscapesScripts' (such a class counts 0 in the IoU mean only when "
                        "it was predicted)")
    p.add_argument("--allow_any_size", action="store_true",
                   help="score synthesized photos of a size no generator run produces (not square, not the label "
                        "aspect, or under 32 pixels), with a warning")
    p.add_argument("--label", default=None, help="row name for compare_runs (default: GT or the run's name)")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes for image loading")
    p.add_argument("--num_samples", type=int, default=8, help="frames shown in the HTML report")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = fcn_score(args.result_dir, args.cityscapes_dir, args.scorer, args.output_dir, protocol=args.protocol,
                        real=args.real, split=args.split, eval_size=args.eval_size, real_size=args.real_size,
                        batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
                        allow_subset=args.allow_subset, num_samples=args.num_samples,
                        pix2pix_compat=args.pix2pix_compat, label=args.label, progress=not args.no_progress,
                        allow_any_size=args.allow_any_size)
    s, b = results["scores"], results["majority_baseline"]
    print(f"{results['label']}: per-pixel acc {_fmt3(s['per_pixel_acc'])}, per-class acc "
          f"{_fmt3(s['per_class_acc'])}, class IoU {_fmt3(s['class_iou'])} ({results['num_frames']} frames, "
          f"protocol {results['protocol']}); majority class: {_fmt3(b['per_pixel_acc'])} / "
          f"{_fmt3(b['per_class_acc'])} / {_fmt3(b['class_iou'])}")
    if results.get("miou") is not None:
        print(f"mIoU (GAN Compression's, x100): {results['miou']:.2f}")
    if results["psnr_mean"] is not None:
        print(f"PSNR {results['psnr_mean']:.2f} dB, SSIM {results['ssim_mean']:.3f}")
    print(f"reports in {Path(args.output_dir) / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
