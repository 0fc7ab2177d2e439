#!/usr/bin/env python
"""The whole pix2pix-TR job on the embedded synthetic city, in one command (see pix2pix_tr/demo.py).

    python demo.py                      # a few minutes on 2 CPU cores (the README gives the time measured)
    python demo.py --preset tiny        # the smallest run, for the test suite and a quick check

Installed, the same program is the ``pix2pix-tr-demo`` command.
"""

import sys

from pix2pix_tr.demo import main

if __name__ == "__main__":
    sys.exit(main())
