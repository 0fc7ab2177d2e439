"""Train pix2pix (U-Net generator + PatchGAN discriminator), each network with its own optimiser.

    python train.py --dataroot ./datasets/cityscapes --name cityscapes_tradam --direction BtoA

Several GPUs or machines: ``torchrun --nproc_per_node 4 train.py ...`` (see docs/training.md).
Exit status: 0 finished or stopped cleanly (Ctrl-C / SIGTERM / --max_iters, state saved), 1 a loss became
NaN/inf (the last good checkpoint is kept), 2 bad options or data.
"""

import sys

from pix2pix_tr.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
