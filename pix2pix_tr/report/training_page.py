"""The training web gallery: ``checkpoints/NAME/web/index.html``.

Like the original pix2pix ``Visualizer``, the training loop shows a few current visuals (``real_A``,
``fake_B``, ``real_B``) at the end of each epoch. Unlike it, the page is updated incrementally: each call of
:meth:`TrainingGallery.add_epoch` saves only that epoch's images, appends one entry to a small JSON index
(``web/gallery.json``) and regenerates the HTML from the index; earlier images are never re-read or re-saved.
A resumed run picks up the existing index, so the page keeps the epochs of the interrupted run; adding an
epoch that is already there (an epoch repeated after a resume) replaces its entry.

Usage (what the training loop does)::

    gallery = TrainingGallery(Path(checkpoints_dir) / name / "web", title=f"pix2pix-TR {name}")
    gallery.add_epoch(epoch, {"real_A": real_A[0], "fake_B": fake_B[0], "real_B": real_B[0]})
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

from dominate import tags as T

from pix2pix_tr.cli import json_clean
from pix2pix_tr.io import atomic_write_text
from pix2pix_tr.report.html import image_cell, new_document, rel_url, safe_name, write_document
from pix2pix_tr.report.images import ImageLike, save_image

__all__ = ["TrainingGallery"]

INDEX_JSON = "gallery.json"


class TrainingGallery:
    """Per-epoch image gallery of a training run, newest epoch first.

    Args:
        web_dir: the folder of the page (``checkpoints/NAME/web``); images go to ``web_dir/images``.
        title: page title (e.g. the run name).
        reset: start an empty gallery even if ``web_dir/gallery.json`` exists (a fresh, non-resumed run).
            Old image files are left on disk (they are overwritten as epochs are added again).
        image_width: thumbnail width in pixels on the page (the link opens the full image).
    """

    def __init__(self, web_dir: str | os.PathLike, title: str = "training", *, reset: bool = False,
                 image_width: int = 256):
        self.web_dir = Path(web_dir)
        self.image_dir = self.web_dir / "images"
        self.title = title
        self.image_width = int(image_width)
        self.entries: list[dict[str, Any]] = []
        index = self.web_dir / INDEX_JSON
        if index.exists() and not reset:
            try:
                data = json.loads(index.read_text(encoding="utf-8"))
                self.entries = list(data["entries"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{index} is not a training gallery index ({exc}); delete it to start a new gallery") from exc

    @property
    def index_path(self) -> Path:
        return self.web_dir / "index.html"

    def add_epoch(self, epoch: int, visuals: Mapping[str, ImageLike], *,
                  info: Mapping[str, Any] | None = None) -> Path:
        """Save ``visuals`` as ``images/epoch{epoch:03d}_{key}.png`` and rewrite ``index.html``.

        ``visuals`` maps a name (``real_A``...) to a [-1, 1] ``C x H x W`` tensor (or ``1 x C x H x W``) or an
        ``H x W x 3`` uint8 array. ``info`` (optional) is shown under the epoch heading, e.g. the epoch's mean
        losses. Returns the path of ``index.html``.
        """
        epoch = int(epoch)
        images = {}
        for key, value in visuals.items():
            fname = f"epoch{epoch:03d}_{safe_name(key)}.png"
            save_image(value, self.image_dir / fname)
            images[str(key)] = f"images/{fname}"
        entry = {
            "epoch": epoch,
            "images": images,
            "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "info": json_clean(dict(info or {})),
        }
        self.entries = [e for e in self.entries if int(e["epoch"]) != epoch] + [entry]
        self.entries.sort(key=lambda e: int(e["epoch"]), reverse=True)
        atomic_write_text(self.web_dir / INDEX_JSON,
                          json.dumps({"title": self.title, "entries": self.entries}, indent=1))
        return self.write_html()

    def write_html(self) -> Path:
        """Regenerate ``index.html`` from the entries (no image is read)."""
        doc = new_document(self.title)
        with doc:
            T.h1(self.title)
            T.p(f"{len(self.entries)} epoch(s), newest first. Updated "
                f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}.", cls="note")
            if (self.web_dir.parent / "loss_curve.png").exists():
                with T.p():
                    T.a("loss curve", href=rel_url(self.web_dir.parent / "loss_curve.png", self.web_dir))
            for entry in self.entries:
                T.h2(f"epoch {entry['epoch']}", id=f"epoch{int(entry['epoch'])}")
                if entry.get("info"):
                    T.p(", ".join(f"{k}: {_fmt(v)}" for k, v in entry["info"].items()), cls="note")
                with T.table(cls="gallery"):
                    with T.tr():
                        for key, src in entry["images"].items():
                            image_cell(src, key, width=self.image_width)
        return write_document(doc, self.index_path)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
