"""Reading a ``test.py`` results folder (``results/NAME/PHASE_EPOCH``) and deciding whether it can be trusted.

test.py states in ``results.json`` what produced the folder:

* ``"status"``: ``"incomplete"`` while test.py runs (written before any image), ``"complete"`` at the end;
* ``"run_id"``: a string unique to that test.py invocation; every synthesized PNG it writes carries it in the
  PNG text chunk ``pix2pix_tr_run`` (:data:`RUN_ID_KEY`);
* ``"test_preprocess"``: ``{"preprocess", "load_size", "crop_size", "crop": "none"|"center", "full_frame"}``;
  ``full_frame`` is false when the images show only a crop of the frame.

The readers (``fcn_score``, ``pix2pix_tr.report.compare``) apply one rule, :func:`check_trusted`: a folder left
``incomplete`` (test.py was interrupted), or whose images carry another run's id or none (a *mixed* folder: an
interrupted rerun over an older run's images), is refused in one sentence that says to rerun test.py. A
``results.json`` without ``"status"`` comes from an older test.py: it is accepted as before, with a note (once per
folder and process) that it cannot be checked for mixing.

The module reads files only (json, Pillow); it imports neither torch nor the rest of the package, so the
evaluator may use it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

__all__ = ["RESULTS_JSON", "RUN_ID_KEY", "ResultsFolderError", "read_results_json", "check_trusted",
           "image_run_id", "is_full_frame", "test_preprocess", "OUTPUT_MARKERS", "foreign_outputs"]

RESULTS_JSON = "results.json"
#: The PNG text chunk in which test.py stores its run id.
RUN_ID_KEY = "pix2pix_tr_run"
STATUSES = ("incomplete", "complete")

#: Files that mark a folder as another tool's output (a writer must not put its own files there).
OUTPUT_MARKERS = {
    "results.json": "test.py's results (or an experiment's)",
    "evaluation_results.json": "an fcn_score report",
    "compare.json": "a compare page (python -m pix2pix_tr.report.compare)",
    "training_state.pth": "a training run",
    "train_opt.txt": "a training run",
}

_noted: set[str] = set()


class ResultsFolderError(ValueError):
    """A results folder that cannot be trusted; the message names it and says to rerun test.py."""


def read_results_json(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's ``results.json`` as a dict, or None when there is none. A file that is not a test.py
    ``results.json`` (unreadable JSON, no ``stems`` list) is a :class:`ResultsFolderError`."""
    path = Path(run_dir) / RESULTS_JSON
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        stems = meta["stems"]
        if not isinstance(stems, list):
            raise TypeError("stems is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ResultsFolderError(f"{path} is not a results.json written by test.py; rerun test.py or remove "
                                 f"it") from None
    return meta


def image_run_id(path: str | os.PathLike) -> str | None:
    """The run id a PNG carries in its ``pix2pix_tr_run`` text chunk, or None (no chunk, not a PNG)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            value = img.info.get(RUN_ID_KEY)  # chunks before the image data, read without decoding
            if value is None and img.format == "PNG":
                value = img.text.get(RUN_ID_KEY)  # chunks after the image data need a full read
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def test_preprocess(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """``results.json``'s ``test_preprocess`` dict, or None when the folder does not record it."""
    if not meta:
        return None
    value = meta.get("test_preprocess")
    return value if isinstance(value, dict) else None


def is_full_frame(meta: dict[str, Any] | None) -> bool | None:
    """True/False as recorded by test.py (``test_preprocess.full_frame``); None when not recorded."""
    pre = test_preprocess(meta)
    if pre is None or "full_frame" not in pre:
        return None
    return bool(pre["full_frame"])


def check_trusted(run_dir: str | os.PathLike, meta: dict[str, Any] | None, images: Iterable[str | os.PathLike], *,
                  what: str = "results folder") -> None:
    """Refuse an incomplete or mixed results folder (see the module docstring); ``images`` are the synthesized
    PNGs the caller is about to use. ``meta`` is :func:`read_results_json`'s answer (None: no results.json, e.g. a
    folder of images made by hand, accepted as it is)."""
    run_dir = Path(run_dir)
    if meta is None:
        return
    listing = run_dir / RESULTS_JSON
    if "status" not in meta:
        key = str(run_dir.resolve())
        if key not in _noted:
            _noted.add(key)
            print(f"note: {listing} was written by an older test.py (it has no \"status\"), so {run_dir} cannot be "
                  f"checked for images left by another run; rerun test.py to make it checkable", file=sys.stderr)
        return
    status, run_id = meta.get("status"), meta.get("run_id")
    if status not in STATUSES:
        raise ResultsFolderError(f"{listing} has status {status!r}, which test.py never writes (it writes "
                                 f"{' or '.join(STATUSES)}); rerun test.py for {run_dir}")
    if status == "incomplete":
        raise ResultsFolderError(f"{run_dir} is incomplete: the test.py run that writes it stopped before the end "
                                 f"(or is still running), so its images may mix two runs; rerun test.py for it")
    if not isinstance(run_id, str) or not run_id:
        raise ResultsFolderError(f"{listing} says status complete but holds no run_id, so its images cannot be "
                                 f"checked; rerun test.py for {run_dir}")
    for path in images:
        found = image_run_id(path)
        if found != run_id:
            carried = f"carries run id {found!r}" if found is not None else "carries no run id"
            raise ResultsFolderError(f"{run_dir} mixes images of different test.py runs ({Path(path).name} {carried}, "
                                     f"results.json says {run_id!r}); rerun test.py for it")


def foreign_outputs(folder: str | os.PathLike, *, own: Iterable[str] = ()) -> str | None:
    """What another tool's output in ``folder`` is (a description), or None; files named in ``own`` (the
    caller's own outputs) do not count."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    own = set(own)
    for name, what in OUTPUT_MARKERS.items():
        if name not in own and (folder / name).exists():
            return f"{what} ({name})"
    return None
