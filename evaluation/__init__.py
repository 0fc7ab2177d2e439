"""FCN-score evaluation of Cityscapes labels->photo (see docs/evaluation.md).

* :mod:`evaluation.labels`        the Cityscapes label table (ids, train ids, colours)
* :mod:`evaluation.metrics`       ``confusion_matrix`` and ``segmentation_scores`` (the three FCN-scores)
* :mod:`evaluation.scorer`        scorer networks (FCN-8s/VGG16, torchvision FCN/DeepLabv3, a small FCN-8s) and
                                  their checked checkpoints
* :mod:`evaluation.caffe_fcn8s`   the pix2pix authors' Cityscapes FCN-8s, read from its ``.caffemodel``
* :mod:`evaluation.drn`           DRN-D-105 + ``DRNSeg`` (fyu/drn), GAN Compression's scorer
* :mod:`evaluation.protocols`     the protocols (pix2pix, 256, drn), size checks, the published arithmetic
* :mod:`evaluation.train_scorer`  ``python -m evaluation.train_scorer``: train a scorer on your Cityscapes photos
* :mod:`evaluation.fcn_score`     ``python -m evaluation.fcn_score``: score a ``test.py`` results folder
* :mod:`evaluation.compare_runs`  ``python -m evaluation.compare_runs``: the paper-style table
* :mod:`evaluation.sanity_check`  ``python -m evaluation.sanity_check``: does a scorer rank degraded photos lower?

Nothing here imports torch at package import time; the submodules do.
"""
