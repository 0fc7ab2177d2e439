"""``python -m pix2pix_tr.inference ...`` = ``python test.py ...``."""

import sys

from pix2pix_tr.inference.run import main

sys.exit(main())
