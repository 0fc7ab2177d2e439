"""Synthesize a split with a trained pix2pix generator and browse it as an HTML gallery.

    python test.py --dataroot cityscapes --name NAME [--epoch latest] [--phase val] [--num_test N] [--eval]

Writes results/NAME/{phase}_{epoch}/images/{stem}_real_A.png, _fake_B.png, _real_B.png, index.html
and results.json. Network options come from checkpoints/NAME/train_opt.json. See docs/testing.md and
pix2pix_tr/inference.py.
"""

from pix2pix_tr.inference import main

if __name__ == "__main__":
    raise SystemExit(main())
