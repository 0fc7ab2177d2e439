"""Train pix2pix (U-Net generator + PatchGAN discriminator), each network with its own optimiser.

    python train.py --dataroot ./datasets/cityscapes --name cityscapes_tradam --direction BtoA

Several GPUs or machines: ``torchrun --nproc_per_node 4 train.py ...`` (see docs/training.md).
Exit status (docs/reliability.md): 0 finished or stopped cleanly (Ctrl-C / SIGTERM / --max_iters, state saved),
1 diverged: a loss or a weight became NaN/inf (the last good checkpoint is kept), 2 bad options, data or run
folder (also: another process is training in it), 3 no space left on the disk (the last complete checkpoint is
kept: free space and resume with --continue_train), 130 aborted by a second Ctrl-C.
"""

import sys

from pix2pix_tr.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
