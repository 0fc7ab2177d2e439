"""test.py: run a trained generator (ours or the official pix2pix's) over a split.

* :mod:`pix2pix_tr.inference.checkpoint`  where the network options come from, loading a checkpoint and
                                          matching it to them (which flag to change when it does not fit)
* :mod:`pix2pix_tr.inference.translator`  :class:`Translator`: a trained generator in one call (what test.py uses)
* :mod:`pix2pix_tr.inference.datasets`    what test.py reads: A|B pairs or single images, checked against the mode
* :mod:`pix2pix_tr.inference.run`         the test run: images, HTML gallery, ``results.json``
* :mod:`pix2pix_tr.inference.export`      ``pix2pix-tr-export``: the generator as ONNX, TorchScript or a
                                          ``torch.export`` program

``python test.py ...``, ``python -m pix2pix_tr.inference ...`` and the installed ``pix2pix-tr-test`` are the
same program (:func:`main`).
"""

from pix2pix_tr.inference.checkpoint import (CheckpointMismatchError, InferenceError, build_generator,
                                             checkpoint_path, diagnose_mismatch, generator_options, load_state_dict,
                                             network_options, read_options_txt)
from pix2pix_tr.inference.run import main, optimizer_summary, run_header, run_test
from pix2pix_tr.inference.translator import Translator

__all__ = ["Translator", "InferenceError", "CheckpointMismatchError", "generator_options", "checkpoint_path", "load_state_dict",
           "build_generator", "diagnose_mismatch", "network_options", "read_options_txt", "run_test", "main",
           "run_header", "optimizer_summary"]
