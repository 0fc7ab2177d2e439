#!/usr/bin/env python
"""Cityscapes (real or synthetic) -> pix2pix A|B pairs named {city}_{seq}_{frame}.png (see docs/data.md).

    python datasets/prepare_cityscapes_dataset.py --gtFine_dir CITYSCAPES/gtFine \
        --leftImg8bit_dir CITYSCAPES/leftImg8bit --output_dir ./datasets/cityscapes
"""
import sys

from pix2pix_tr.data.cli import prepare_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(prepare_main))
