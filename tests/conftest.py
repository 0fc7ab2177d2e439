"""Session-wide test data: a tiny synthetic city and its prepared A|B folder (made once per test session)."""

from __future__ import annotations

import pytest
import torch

from pix2pix_tr.data.cityscapes import prepare_cityscapes
from pix2pix_tr.data.synthetic_city import make_synthetic_cityscapes


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where no CUDA device is visible (CI and the CPU machines)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_city(tmp_path_factory):
    """Path of a tiny city in the Cityscapes layout: train 8, val 4 frames, 128x64 photos, seed 0.

    ``leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png`` and ``gtFine/{split}/{city}/{stem}_gtFine_labelIds.png``
    / ``_gtFine_color.png``; treat it as read-only (it is shared by every test of the session).
    """
    root = tmp_path_factory.mktemp("synthetic_city")
    make_synthetic_cityscapes(root, n_train=8, n_val=4, seed=0, width=128, height=64)
    return root


@pytest.fixture(scope="session")
def ab_root(synthetic_city, tmp_path_factory):
    """Path of the prepared A|B folder of ``synthetic_city``: ``train/`` (8) and ``val/`` (4) PNGs of 128x64
    (photo 64x64 left, colour label 64x64 right), named ``{city}_{seq}_{frame}.png``. Read-only."""
    root = tmp_path_factory.mktemp("ab_root")
    prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", root, size=64)
    return root
