"""Small building blocks shared by the HTML pages (test gallery, training gallery, run comparison).

Pages are built with `dominate <https://github.com/Knio/dominate>`_ and are self-contained: the style sheet is
inline, there is no JavaScript and nothing is fetched from the internet. Every ``src``/``href`` is a relative
URL (path components percent-quoted), so a results folder can be moved, zipped or served by any static web
server (``python -m http.server``) and still display. All pages are written atomically.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote

import dominate
from dominate import tags as T
from dominate.util import raw

from pix2pix_tr.io import atomic_write_text

__all__ = [
    "STYLE", "rel_url", "new_document", "write_document", "page_file_name", "pager", "image_cell",
    "settings_table", "safe_name",
]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin: 1.2em 0 .3em; }
table.meta { border-collapse: collapse; margin: .4em 0 1em; font-size: .9em; }
table.meta td, table.meta th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
table.gallery { border-collapse: collapse; }
table.gallery td { padding: 4px; text-align: center; vertical-align: top; font-size: .85em; }
table.gallery th { font-size: .85em; padding: 4px; }
table.gallery tr:nth-child(even) { background: #f6f6f6; }
td.stem { text-align: left; font-family: monospace; max-width: 16em; word-break: break-all; }
img { display: block; margin: 0 auto 2px; image-rendering: auto; }
nav.pager { margin: .8em 0; font-size: .95em; }
nav.pager a, nav.pager span { margin-right: .6em; }
nav.pager span.current { font-weight: bold; }
p.note { color: #555; font-size: .9em; }
"""


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``; everything else ``_``)."""
    out = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(text))
    return out or "_"


def rel_url(target: str | os.PathLike, from_dir: str | os.PathLike) -> str:
    """Relative URL from the folder ``from_dir`` (where the page lives) to the file ``target``.

    Path components are percent-quoted, so names with spaces, ``#`` or ``%`` still work in a browser.
    """
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(from_dir))
    parts = Path(rel).parts
    return posixpath.join(*(quote(p) for p in parts)) if parts else "."


def new_document(title: str) -> dominate.document:
    """An empty page with the shared inline style sheet (no external css or js)."""
    doc = dominate.document(title=title)
    with doc.head:
        T.meta(charset="utf-8")
        T.meta(name="viewport", content="width=device-width, initial-scale=1")
        T.style(raw(STYLE))
    return doc


def write_document(doc: dominate.document, path: str | os.PathLike) -> Path:
    """Render ``doc`` and write it atomically to ``path``."""
    path = Path(path)
    atomic_write_text(path, doc.render())
    return path


def page_file_name(page: int) -> str:
    """``index.html`` for page 1, ``index_2.html``, ``index_3.html``... after it."""
    return "index.html" if page == 1 else f"index_{page}.html"


def pager(page: int, n_pages: int) -> None:
    """Emit (inside the current dominate context) a ``prev | 1 2 3 | next`` navigation bar; nothing if 1 page."""
    if n_pages <= 1:
        return
    with T.nav(cls="pager"):
        if page > 1:
            T.a("\u2190 prev", href=page_file_name(page - 1), rel="prev")
        for p in range(1, n_pages + 1):
            if p == page:
                T.span(str(p), cls="current")
            else:
                T.a(str(p), href=page_file_name(p))
        if page < n_pages:
            T.a("next \u2192", href=page_file_name(page + 1), rel="next")


def image_cell(src: str, caption: str, *, width: int = 256, href: str | None = None) -> None:
    """Emit a table cell with a thumbnail (``width`` px wide) linking to the full image, and a caption."""
    with T.td():
        with T.a(href=href or src):
            T.img(src=src, width=width, alt=caption, loading="lazy")
        T.div(caption)


def settings_table(items: dict | Iterable[tuple[str, object]], *, title: str | None = None) -> None:
    """Emit a two-column key/value table (run settings, optimizer hyper-parameters...)."""
    pairs: Sequence[tuple[str, object]] = list(items.items() if isinstance(items, dict) else items)
    with T.table(cls="meta"):
        if title:
            T.tr(T.th(title, colspan=2))
        for key, value in pairs:
            T.tr(T.th(str(key)), T.td(str(value)))
