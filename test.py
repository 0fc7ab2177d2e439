"""Synthesize a split with a trained pix2pix generator and browse it as an HTML gallery.

    python test.py --dataroot cityscapes --name NAME [--epoch latest] [--phase val] [--num_test N] [--eval]

Writes results/NAME/{phase}_{epoch}/images/{stem}_real_A.png, _fake_B.png, _real_B.png, index.html
and results.json. Network options come from checkpoints/NAME/train_opt.json, else the official pix2pix's
train_opt.txt there, else the command line (--direction --netG --ngf --norm --no_dropout). See docs/testing.md,
docs/migration.md and pix2pix_tr/inference/.
"""

from pix2pix_tr.inference import main

if __name__ == "__main__":
    raise SystemExit(main())
