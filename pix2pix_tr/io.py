"""Atomic file output: nothing the user had is lost if a write is interrupted.

Every checkpoint, image, log snapshot and HTML page goes through these helpers: the data is written to a
temporary file in the destination folder, flushed, and renamed over the destination (``os.replace`` is atomic
on POSIX and Windows when both paths are on the same filesystem). A full disk (ENOSPC/EDQUOT, also when
``torch.save`` wraps it in a RuntimeError) becomes :class:`NoSpaceError`, after the partial file is removed.
Temporary files are named ``.{name}.XXXXXXXX.tmp`` (:data:`TMP_GLOB`) so that a tool owning a folder can
remove the ones a killed process left behind.

Reading images has one place too: :func:`read_image` (as a viewer displays the file: EXIF orientation applied,
16-bit files scaled by one fixed rule), :func:`read_label_ids` (label maps as values, never scaled) and
:func:`read_image_size` (the displayed size, from the header).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

# mkstemp creates files readable by their owner only; the renamed file should get the usual permissions.
# The umask is read once, at import (reading it means setting it, which is not thread-safe later).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: glob pattern of the temporary files of :func:`atomic_open`
TMP_GLOB = ".*.tmp"

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class NoSpaceError(OSError):
    """A write failed because the disk (or quota) is full. ``folder`` is where it was writing, ``free_bytes``
    what was free there after the partial file was removed. The destination file is untouched."""

    def __init__(self, path: Path, free_bytes: int | None) -> None:
        self.path = Path(path)
        self.folder = self.path.parent
        self.free_bytes = free_bytes
        free = "" if free_bytes is None else f" ({free_bytes / 2**20:.1f} MB free)"
        super().__init__(errno.ENOSPC, f"no space left on {self.folder}{free} while writing {self.path.name}")

    def __str__(self) -> str:
        return self.strerror


def is_no_space(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is a full disk. ``torch.save`` reports a full disk
    as a RuntimeError ("enforce fail at inline_container.cc") whose context is the OSError(ENOSPC)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NoSpaceError) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes free for us under ``folder`` (None when it cannot be measured)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success, delete it on error."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open writes files; mode must contain 'w' or 'x', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, mode.replace("x", "w"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_no_space(exc) and not isinstance(exc, NoSpaceError):
            raise NoSpaceError(path, free_bytes(path.parent)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename: a crash mid-write leaves the old checkpoint intact."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_save_image(image: Any, path: str | os.PathLike, **save_kwargs: Any) -> None:
    """Save a PIL image or an (H, W[, C]) uint8 array; the format follows the destination's extension."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image))
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {path}: use a .png or .jpg file name")
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=fmt, **save_kwargs)


# ------------------------------------------------------------------------------------------------ reading images
#: EXIF orientation (tag 0x0112) -> the transpose that shows the image as a viewer displays it (as PIL's
#: ``ImageOps.exif_transpose`` and OpenCV's ``imread`` apply it).
_ORIENTATION_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                          6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _png_header(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from a PNG's IHDR chunk, or None when the file is not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _png_has_late_chunks(path: str | os.PathLike) -> bool:
    """Whether a PNG holds a chunk (other than IEND) after its image data: PIL reads those (an ``eXIf`` may be
    one) only when it decodes the pixels. Reads the chunk headers only."""
    import struct

    with open(path, "rb") as handle:
        handle.seek(8)
        seen_data = False
        while True:
            head = handle.read(8)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IDAT":
                seen_data = True
            elif seen_data:
                return kind != b"IEND"
            handle.seek(length + 4, os.SEEK_CUR)


def _orientation(img: Any, path: str | os.PathLike, *, decoded: bool) -> int:
    """The EXIF orientation (1..8; 1 = as stored) PIL finds for ``img``. Without ``decoded``, a PNG whose late
    chunks PIL has not read yet is decoded only when it has such chunks (rare), so that sizes stay cheap."""
    from PIL import Image

    if decoded or img.format != "PNG" or _png_has_late_chunks(path):
        exif = img.getexif()
    else:  # every chunk PIL needs was read with the header: do not make PngImageFile.getexif decode the pixels
        exif = Image.Image.getexif(img)
    value = exif.get(_EXIF_ORIENTATION, 1)
    return value if value in _ORIENTATION_TRANSPOSE else 1


def _orient(image: Any, orientation: int) -> Any:
    from PIL import Image

    name = _ORIENTATION_TRANSPOSE.get(orientation)
    if name is None:
        return image
    return image.transpose(getattr(Image.Transpose, name) if hasattr(Image, "Transpose") else getattr(Image, name))


def sixteen_to_eight(values: Any) -> Any:
    """16-bit samples (0..65535) -> 8-bit (0..255) with one fixed scale, ``round(v / 257)`` (v * 255 / 65535,
    the PNG specification's rescaling): 257 * k maps back to k exactly, and the result never depends on the
    other pixels of the file."""
    import numpy as np

    arr = np.asarray(values, dtype=np.int64)
    return ((np.clip(arr, 0, 65535) + 128) // 257).astype(np.uint8)


def _decode_16bit_colour_png(path: str | os.PathLike) -> Any:
    """A 16-bit colour (or grey + alpha) PNG as an 8-bit RGB or L PIL image, as stored (not yet oriented). PIL
    keeps only the high byte of such files; OpenCV reads all 16 bits, which are then scaled like grey ones."""
    import cv2
    import numpy as np
    from PIL import Image

    arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError("OpenCV could not decode the 16-bit PNG")
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha: the alpha is dropped, as PIL's conversion does
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(sixteen_to_eight(arr), "L")
    rgb = arr[:, :, 2::-1] if arr.shape[2] >= 3 else arr  # BGR(A) -> RGB, alpha dropped
    return Image.fromarray(np.ascontiguousarray(sixteen_to_eight(rgb)), "RGB")


def read_image(path: str | os.PathLike, *, error: type[Exception] = ValueError) -> Any:
    """Decode an image file as a viewer displays it: an 8-bit PIL image, ``"L"`` (grey) or ``"RGB"``.

    The one function every image we read goes through (photos, A|B pairs, colour labels), so that two files
    never mean different things:

    * EXIF orientation is applied (a phone photo stored sideways with "rotate 90" is returned upright), as
      OpenCV's ``imread``, which the official pix2pix scripts used, does;
    * 16-bit files are scaled by one fixed rule, :func:`sixteen_to_eight` (``round(v / 257)``), never by their
      own maximum: two files holding the value 200 give the same pixel;
    * palette, alpha, bilevel and CMYK images become RGB as PIL converts them; 8-bit RGB and grey files come
      back with exactly PIL's pixels.

    Label-id maps are values, not intensities: read them with :func:`read_label_ids`, which never scales.
    A missing, unreadable or truncated file raises ``error`` with one sentence naming it.
    """
    import numpy as np
    from PIL import Image

    try:
        header = _png_header(path)
        with Image.open(path) as img:
            img.load()
            orientation = _orientation(img, path, decoded=True)
            if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
                out = _decode_16bit_colour_png(path)
            elif img.mode in _SIXTEEN_BIT_GREY:
                out = Image.fromarray(sixteen_to_eight(np.asarray(img)), "L")
            elif img.mode in ("RGB", "L"):
                out = img.copy()
            else:
                out = img.convert("RGB")
    except FileNotFoundError:
        raise error(f"the image {path} does not exist") from None
    except error:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise error(f"cannot read the image {path} ({type(exc).__name__}: {exc}): the file is corrupt or not an "
                    "image; re-create or remove it") from None
    return _orient(out, orientation)


def read_label_ids(path: str | os.PathLike, *, error: type[Exception] = ValueError) -> Any:
    """A one-channel label map (Cityscapes' ``*_labelIds.png``, 8- or 16-bit, or a palette image) as an (H, W)
    integer numpy array of the stored values, EXIF orientation applied. Label ids are values, not intensities:
    they are never scaled (a 16-bit file holding id 26 gives 26). A colour image raises ``error`` (label ids
    are one channel; a ``*_color.png`` is read with :func:`read_image`)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            orientation = _orientation(img, path, decoded=True)
            mode = img.mode
            ids = _orient(img, orientation) if mode in ("L", "P") or mode in _SIXTEEN_BIT_GREY else None
            ids = None if ids is None else np.array(ids)  # palette images: the indices are the ids
    except FileNotFoundError:
        raise error(f"the label map {path} does not exist") from None
    except Exception as exc:
        raise error(f"cannot read the label map {path} ({type(exc).__name__}: {exc}): the file is corrupt or not "
                    "an image; re-create or remove it") from None
    if ids is None:
        raise error(f"{path} is a {mode} image, not a label-id map (one channel of ids): pass the *_labelIds.png "
                    "file, not a colour rendering")
    return ids


def read_image_size(path: str | os.PathLike, *, error: type[Exception] = ValueError) -> tuple[int, int]:
    """``(width, height)`` of the image :func:`read_image` returns (EXIF orientation applied), from the file
    header without decoding the pixels (a PNG with chunks after its image data is decoded to find them)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = _orientation(img, path, decoded=False)
    except FileNotFoundError:
        raise error(f"the image {path} does not exist") from None
    except Exception as exc:
        raise error(f"cannot read the image {path} ({type(exc).__name__}: {exc}): the file is corrupt or not an "
                    "image; re-create or remove it") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
