#!/usr/bin/env python
"""The whole pix2pix-TR job on the embedded synthetic city, in one command (see pix2pix_tr/demo.py).

    python demo.py                      # about 5 minutes on 2 CPU cores
    python demo.py --preset tiny        # the smallest run (about a minute)

Installed, the same program is the ``pix2pix-tr-demo`` command.
"""

import sys

from pix2pix_tr.demo import main

if __name__ == "__main__":
    sys.exit(main())
