#!/usr/bin/env python
"""Combine paired folders A/ and B/ (same file names) into pix2pix A|B images (see docs/data.md).

    python datasets/combine_A_and_B.py --fold_A ./my_data/A --fold_B ./my_data/B --fold_AB ./my_data/AB
"""
import sys

from pix2pix_tr.data.cli import combine_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(combine_main))
