"""FCN-score evaluation of Cityscapes labels->photo (see docs/evaluation.md, "Module layout").

Layers, each importing only the ones above it:

* :mod:`evaluation.labels`        the Cityscapes label table (ids, train ids, colours)
* :mod:`evaluation.metrics`       ``confusion_matrix`` and ``segmentation_scores`` (the three FCN-scores); numpy only
* :mod:`evaluation.common`        errors, Cityscapes file discovery, image loading, devices, CLI exits
* :mod:`evaluation.caffe_fcn8s`   the pix2pix authors' Cityscapes FCN-8s, read from its ``.caffemodel``
* :mod:`evaluation.drn`           DRN-D-105 + ``DRNSeg`` (fyu/drn), GAN Compression's scorer
* :mod:`evaluation.tf_graph`      a frozen TensorFlow ``GraphDef`` read with protobuf and run in PyTorch
* :mod:`evaluation.deeplab`       DeepLab's DPC-Xception71 export (the TRAdam paper's Table 3 scorer) on tf_graph
* :mod:`evaluation.scorer`        scorer networks and ``load_scorer`` (trained checkpoints and the published files)
* :mod:`evaluation.protocols`     the protocols (pix2pix, 256, drn), size checks, the published arithmetic
* :mod:`evaluation.frames`        the synthesized frames of a ``test.py`` results folder, matched to the ground truth
* :mod:`evaluation.scoring`       ``score(...)``: label every photo and count (no output folder)
* :mod:`evaluation.summary`       ``summarize(scored)``: the results dict of ``evaluation_results.json``
* :mod:`evaluation.reports`       the output folder: JSON, text and HTML reports

Commands, each with its own entry point (``main(argv)`` and ``command()``):

* :mod:`evaluation.fcn_score`     ``python -m evaluation.fcn_score``: score a ``test.py`` results folder
* :mod:`evaluation.train_scorer`  ``python -m evaluation.train_scorer``: train a scorer on your Cityscapes photos
* :mod:`evaluation.compare_runs`  ``python -m evaluation.compare_runs``: the paper-style table
* :mod:`evaluation.sanity_check`  ``python -m evaluation.sanity_check``: does a scorer rank degraded photos lower?
* :mod:`evaluation.fid`           ``python -m evaluation.fid``: FID and KID (pytorch-fid's Inception, local weights)

Nothing here imports torch at package import time; the submodules do.
"""
