"""Data for pix2pix-TR: the aligned A|B dataset, its sampler/loader, Cityscapes preparation, the synthetic city.

``from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader, resolve_dataroot`` covers training;
``prepare_cityscapes`` and ``make_synthetic_cityscapes`` make the data (see ``docs/data.md``).
"""

from pix2pix_tr.data.aligned import PREPROCESS_MODES, AlignedDataset
from pix2pix_tr.data.cityscapes import prepare_cityscapes, resolve_dataroot
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.image_folder import IMG_EXTENSIONS, list_images
from pix2pix_tr.data.sampler import EpochSampler, make_dataloader
from pix2pix_tr.data.synthetic_city import make_synthetic_cityscapes

__all__ = ["AlignedDataset", "EpochSampler", "make_dataloader", "resolve_dataroot", "prepare_cityscapes",
           "make_synthetic_cityscapes", "DatasetError", "list_images", "IMG_EXTENSIONS", "PREPROCESS_MODES"]
