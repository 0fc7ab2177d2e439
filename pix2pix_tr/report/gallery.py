"""The result pages of ``test.py``: ``results/NAME/{phase}_{epoch}/index.html`` (+ ``index_2.html``...).

One row per input image: its stem (the input's file name, e.g. ``frankfurt_000000_000294``), then
``real_A | fake_B | real_B`` thumbnails, each linking to the full-size PNG in ``images/``. Rows are split into
pages of ``per_page`` (50 by default: the 500 Cityscapes val frames give 10 pages) joined by prev/next links.
The header shows the run: name, epoch, optimizer and its settings, test mode, date.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from dominate import tags as T

from pix2pix_tr.report.html import image_cell, new_document, page_file_name, pager, settings_table, write_document

__all__ = ["write_results_gallery", "image_file_name", "VISUALS", "CAPTIONS", "n_pages"]

VISUALS = ("real_A", "fake_B", "real_B")
CAPTIONS = {"real_A": "real_A (input)", "fake_B": "fake_B (generated)", "real_B": "real_B (ground truth)"}


def image_file_name(stem: str, visual: str) -> str:
    """``{stem}_{visual}.png``: the file names test.py writes (and FCN-score reads for ``fake_B``)."""
    return f"{stem}_{visual}.png"


def n_pages(n_rows: int, per_page: int) -> int:
    return max(1, math.ceil(n_rows / per_page))


def write_results_gallery(run_dir: str | os.PathLike, stems: Sequence[str], *, title: str,
                          header: Mapping[str, object], per_page: int = 50, visuals: Sequence[str] = VISUALS,
                          image_width: int = 256, note: str | None = None) -> list[Path]:
    """Write the paged gallery for images already saved in ``run_dir/images``; return the page paths.

    ``header`` is shown as a key/value table on every page (run name, epoch, optimizer settings...).
    """
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    from urllib.parse import quote

    run_dir = Path(run_dir)
    total = n_pages(len(stems), per_page)
    pages = []
    for page in range(1, total + 1):
        chunk = stems[(page - 1) * per_page: page * per_page]
        first = (page - 1) * per_page + 1
        doc = new_document(f"{title} ({page}/{total})" if total > 1 else title)
        with doc:
            T.h1(title)
            settings_table(header)
            if note:
                T.p(note, cls="note")
            T.p(f"{len(stems)} image(s); rows {first}-{first + len(chunk) - 1} on page {page} of {total}."
                if stems else "no images", cls="note")
            pager(page, total)
            with T.table(cls="gallery"):
                T.tr(T.th("#"), T.th("name"), *[T.th(v) for v in visuals])
                for i, stem in enumerate(chunk, start=first):
                    with T.tr():
                        T.td(str(i))
                        T.td(stem, cls="stem")
                        for v in visuals:
                            image_cell(f"images/{quote(image_file_name(stem, v))}", CAPTIONS.get(v, v),
                                       width=image_width)
            pager(page, total)
        pages.append(write_document(doc, run_dir / page_file_name(page)))
    # a previous run with more images may have left more pages: remove them so no page links to stale ones
    page = total + 1
    while (run_dir / page_file_name(page)).exists():
        (run_dir / page_file_name(page)).unlink()
        page += 1
    return pages
