"""The Cityscapes label definitions, as published with the dataset (cityscapesScripts ``labels.py``).

One row per label id (0..33) plus the license plate (id -1, never present in the ``labelIds`` images).
``train_id`` 255 means "ignored in training and evaluation"; the 19 evaluated classes have train ids 0..18.

Colour collisions in the official palette (``*_gtFine_color.png`` cannot be inverted uniquely there):

* ids 0-4 (unlabeled, ego vehicle, rectification border, out of roi, static) are all black (0, 0, 0);
* pole (17) and polegroup (18) share (153, 153, 153);
* car (26) and license plate (-1) share (0, 0, 142).

:func:`color_to_id` resolves them to the smallest id (0, 17, 26). For ids 0-4 and for car / license plate the
train id is the same either way (255, 13). The one loss is polegroup: its pixels (train id 255, ignored) come back
as pole (train id 5). polegroup is rare in gtFine (a few hundred thousand pixels of ~1.5e10), and any label map
read back from colours (the pix2pix A|B pairs, for example) carries this ambiguity; the FCN-score therefore reads
ground truth from ``*_gtFine_labelIds.png``, never from colours.

This module is pure data plus numpy lookups (it imports neither torch nor OpenCV, and lives outside
:mod:`pix2pix_tr.data` so that importing it does not load the data package); :mod:`evaluation.labels`
re-exports it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255
NUM_CLASSES = 19


class Label(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]


def _row(name, id_, train_id, category, category_id, has_instances, color):
    return Label(name, id_, train_id, category, category_id, has_instances, train_id == IGNORE_INDEX or id_ < 0,
                 color)


LABELS: tuple[Label, ...] = (
    _row("unlabeled", 0, 255, "void", 0, False, (0, 0, 0)),
    _row("ego vehicle", 1, 255, "void", 0, False, (0, 0, 0)),
    _row("rectification border", 2, 255, "void", 0, False, (0, 0, 0)),
    _row("out of roi", 3, 255, "void", 0, False, (0, 0, 0)),
    _row("static", 4, 255, "void", 0, False, (0, 0, 0)),
    _row("dynamic", 5, 255, "void", 0, False, (111, 74, 0)),
    _row("ground", 6, 255, "void", 0, False, (81, 0, 81)),
    _row("road", 7, 0, "flat", 1, False, (128, 64, 128)),
    _row("sidewalk", 8, 1, "flat", 1, False, (244, 35, 232)),
    _row("parking", 9, 255, "flat", 1, False, (250, 170, 160)),
    _row("rail track", 10, 255, "flat", 1, False, (230, 150, 140)),
    _row("building", 11, 2, "construction", 2, False, (70, 70, 70)),
    _row("wall", 12, 3, "construction", 2, False, (102, 102, 156)),
    _row("fence", 13, 4, "construction", 2, False, (190, 153, 153)),
    _row("guard rail", 14, 255, "construction", 2, False, (180, 165, 180)),
    _row("bridge", 15, 255, "construction", 2, False, (150, 100, 100)),
    _row("tunnel", 16, 255, "construction", 2, False, (150, 120, 90)),
    _row("pole", 17, 5, "object", 3, False, (153, 153, 153)),
    _row("polegroup", 18, 255, "object", 3, False, (153, 153, 153)),
    _row("traffic light", 19, 6, "object", 3, False, (250, 170, 30)),
    _row("traffic sign", 20, 7, "object", 3, False, (220, 220, 0)),
    _row("vegetation", 21, 8, "nature", 4, False, (107, 142, 35)),
    _row("terrain", 22, 9, "nature", 4, False, (152, 251, 152)),
    _row("sky", 23, 10, "sky", 5, False, (70, 130, 180)),
    _row("person", 24, 11, "human", 6, True, (220, 20, 60)),
    _row("rider", 25, 12, "human", 6, True, (255, 0, 0)),
    _row("car", 26, 13, "vehicle", 7, True, (0, 0, 142)),
    _row("truck", 27, 14, "vehicle", 7, True, (0, 0, 70)),
    _row("bus", 28, 15, "vehicle", 7, True, (0, 60, 100)),
    _row("caravan", 29, 255, "vehicle", 7, True, (0, 0, 90)),
    _row("trailer", 30, 255, "vehicle", 7, True, (0, 0, 110)),
    _row("train", 31, 16, "vehicle", 7, True, (0, 80, 100)),
    _row("motorcycle", 32, 17, "vehicle", 7, True, (0, 0, 230)),
    _row("bicycle", 33, 18, "vehicle", 7, True, (119, 11, 32)),
    _row("license plate", -1, -1, "vehicle", 7, False, (0, 0, 142)),
)

NAME_TO_LABEL = {label.name: label for label in LABELS}
ID_TO_LABEL = {label.id: label for label in LABELS}
#: The 19 evaluated class names, indexed by train id.
TRAIN_CLASS_NAMES: tuple[str, ...] = tuple(
    label.name for label in sorted((l for l in LABELS if 0 <= l.train_id < IGNORE_INDEX), key=lambda l: l.train_id))
#: (19, 3) uint8 palette indexed by train id.
TRAIN_PALETTE = np.array([NAME_TO_LABEL[n].color for n in TRAIN_CLASS_NAMES], dtype=np.uint8)


def _id_to_train_id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0 and label.train_id >= 0:
            lut[label.id] = label.train_id
    return lut


def _id_to_color_lut() -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0:
            lut[label.id] = label.color
    return lut


#: 256-entry lookup table: label id -> train id (255 for ignored and unknown ids).
ID_TO_TRAIN_ID = _id_to_train_id_lut()
#: (256, 3) lookup table: label id -> official colour (black for unknown ids).
ID_TO_COLOR = _id_to_color_lut()


def ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a uint8 ``*_gtFine_labelIds`` array to train ids (0..18, 255 ignored)."""
    return ID_TO_TRAIN_ID[np.asarray(label_ids, dtype=np.uint8)]


def ids_to_color(label_ids: np.ndarray) -> np.ndarray:
    """Colour an (H, W) label-id array with the official palette -> (H, W, 3) uint8."""
    return ID_TO_COLOR[np.asarray(label_ids, dtype=np.uint8)]


def train_ids_to_color(train_ids: np.ndarray) -> np.ndarray:
    """Colour an (H, W) train-id array; ignored pixels (255) are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = TRAIN_PALETTE
    return lut[np.asarray(train_ids, dtype=np.uint8)]


def _color_key(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_COLOR_KEYS = {}
for _label in sorted(LABELS, key=lambda l: (l.id < 0, l.id)):  # smallest non-negative id wins a collision
    _COLOR_KEYS.setdefault((_label.color[0] << 16) | (_label.color[1] << 8) | _label.color[2], _label.id)
del _label


def color_to_id(color_image: np.ndarray, unknown: int = 0) -> np.ndarray:
    """Invert the official palette: (H, W, 3) uint8 -> (H, W) uint8 label ids.

    Colliding colours resolve to the smallest id (see the module docstring); a colour that is not in the palette
    (for example a blended colour from bicubic resizing) becomes ``unknown`` (default 0, unlabeled).
    """
    color_image = np.asarray(color_image)
    if color_image.ndim != 3 or color_image.shape[-1] != 3:
        raise ValueError(f"color_to_id expects an (H, W, 3) image, got shape {color_image.shape}")
    keys = _color_key(color_image)
    out = np.full(keys.shape, unknown, dtype=np.uint8)
    for key, label_id in _COLOR_KEYS.items():
        out[keys == key] = label_id
    return out


def color_to_train_id(color_image: np.ndarray) -> np.ndarray:
    """Invert the official palette straight to train ids (polegroup becomes pole; see the module docstring)."""
    return ids_to_train_ids(color_to_id(color_image))
