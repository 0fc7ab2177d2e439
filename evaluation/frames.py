"""Which frames to score: the synthesized photos of a ``test.py`` results folder, matched one to one with the
Cityscapes ground truth.

* :func:`find_fake_frames`: ``{frame_id: path}`` of ``result_dir/images/*_fake_B.png`` (only the frames the
  folder's ``results.json`` lists, when there is one);
* :func:`match_frames`: the frame ids to score; a frame missing on either side is a
  :class:`~evaluation.common.MissingFramesError` listing them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from evaluation.common import FRAME_RE, EvaluationError, MissingFramesError

FAKE_SUFFIXES = ("_fake_B.png", "_fake_B.jpg")


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

