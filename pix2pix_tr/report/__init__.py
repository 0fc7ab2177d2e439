"""Reports: test-time galleries, the training web page, loss plots and run comparison.

- :func:`tensor_to_image` ([-1, 1] tensor -> uint8 image) in :mod:`pix2pix_tr.report.images`
- :class:`TrainingGallery` (``checkpoints/NAME/web/index.html``) in :mod:`pix2pix_tr.report.training_page`
- :func:`plot_losses` (``loss_log.csv`` -> ``loss_curve.png``) in :mod:`pix2pix_tr.report.plots`
- :func:`write_results_gallery` (the pages of ``test.py``) in :mod:`pix2pix_tr.report.gallery`
- ``python -m pix2pix_tr.report.compare RUN_DIR ...`` (runs side by side) in :mod:`pix2pix_tr.report.compare`
"""

from pix2pix_tr.report.images import save_image, tensor_to_image
from pix2pix_tr.report.plots import plot_losses
from pix2pix_tr.report.training_page import TrainingGallery

__all__ = ["tensor_to_image", "save_image", "TrainingGallery", "plot_losses"]
