#!/usr/bin/env python
"""Make a synthetic city in the Cityscapes layout (see docs/data.md).

    python datasets/make_synthetic_cityscapes.py --out ./datasets/synthetic_cityscapes --train 100 --val 20 --seed 0
"""
import sys

from pix2pix_tr.data.cli import run_cli, synthetic_main

if __name__ == "__main__":
    sys.exit(run_cli(synthetic_main))
