"""Cityscapes labels for the FCN-score: the official table, id -> trainId, colour -> id and the palette.

The table itself lives in :mod:`pix2pix_tr.cityscapes_labels`, a numpy-only module that the data tools (the
synthetic city, the dataset preparation) import too; this module is the evaluator's name for it. Importing it
(or :mod:`evaluation.metrics`) loads neither torch nor OpenCV.
"""

from pix2pix_tr.cityscapes_labels import (  # noqa: F401  (re-exported)
    ID_TO_COLOR,
    ID_TO_LABEL,
    ID_TO_TRAIN_ID,
    IGNORE_INDEX,
    LABELS,
    NAME_TO_LABEL,
    NUM_CLASSES,
    TRAIN_CLASS_NAMES,
    TRAIN_PALETTE,
    Label,
    color_to_id,
    color_to_train_id,
    ids_to_color,
    ids_to_train_ids,
    train_ids_to_color,
)
