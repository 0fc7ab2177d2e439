"""Which frames to score: the synthesized photos of a ``test.py`` results folder, matched one to one with the
Cityscapes ground truth.

* :func:`find_fake_frames`: ``{frame_id: path}`` of ``result_dir/images/*_fake_B.png`` (only the frames the
  folder's ``results.json`` lists, when there is one);
* :func:`check_results_folder`: the folder is complete, holds one test.py run's images and whole frames;
* :func:`match_frames`: the frame ids to score; a frame missing on either side is a
  :class:`~evaluation.common.MissingFramesError` listing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from evaluation.common import FRAME_RE, EvaluationError, MissingFramesError
from pix2pix_tr.results_folder import (RESULTS_JSON, ResultsFolderError, check_trusted, is_full_frame,
                                       read_results_json, test_preprocess)

FAKE_SUFFIXES = ("_fake_B.png", "_fake_B.jpg")


def find_fake_frames(result_dir: str | Path) -> dict[str, Path]:
    """``{frame_id: path}`` of the synthesized photos in ``result_dir/images/`` (or ``result_dir`` itself).

    When the folder has test.py's ``results.json``: only the frames it lists (images left by an earlier run with a
    larger ``--num_test`` are not scored), and the folder must be trustworthy (:func:`check_results_folder`)."""
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
    # test.py's folder is results/NAME/PHASE_EPOCH; its images/ passed directly is read with the same listing
    run_dir = result_dir
    if images == result_dir and result_dir.name == "images" and (result_dir.parent / RESULTS_JSON).is_file():
        run_dir = result_dir.parent
    try:
        meta = read_results_json(run_dir)
    except ResultsFolderError as exc:
        raise EvaluationError(str(exc)) from None
    if meta is not None:
        stems = {str(stem) for stem in meta["stems"]}
        frames = {stem: path for stem, path in frames.items() if stem in stems}
    check_results_folder(run_dir, meta, frames.values())
    if not frames:
        raise EvaluationError(f"--result_dir {result_dir} holds no *_fake_B.png images (looked in {images}); "
                              f"pass the folder test.py wrote, e.g. results/NAME/val_latest")
    return frames


def check_results_folder(result_dir: Path, meta: dict | None, images) -> None:
    """A results folder fcn_score can score: complete, not mixed (:func:`pix2pix_tr.results_folder.check_trusted`),
    and of whole frames, since the label maps are whole frames (test.py records ``test_preprocess.full_frame``)."""
    try:
        check_trusted(result_dir, meta, images)
    except ResultsFolderError as exc:
        raise EvaluationError(str(exc)) from None
    if is_full_frame(meta) is False:
        pre = test_preprocess(meta) or {}
        how = " ".join(f"--{k} {pre[k]}" for k in ("preprocess", "load_size", "crop_size") if k in pre)
        crop = pre.get("crop_size", "CROP")
        raise EvaluationError(f"--result_dir {result_dir} holds crops of the frames (test.py ran with {how}), but "
                              f"the label maps are whole frames, so the scores would compare different parts of the "
                              f"picture; rerun test.py with --load_size equal to --crop_size (--load_size {crop}), or "
                              f"without --load_size")


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

