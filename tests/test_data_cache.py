"""--cache_images: decoded once into shared memory, read by DataLoader workers, identical batches."""

import numpy as np
import torch
from PIL import Image

from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader


def _files(root, n=5):
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)).save(root / "train" / f"{k}.png")
    Image.fromarray(rng.integers(0, 256, (40, 80), dtype=np.uint8), "L").save(root / "train" / "gray.png")
    return root


def _batches(ds, workers):
    sampler = EpochSampler(len(ds), shuffle=True, seed=1)
    loader = make_dataloader(ds, 2, sampler, num_workers=workers, seed=1)
    out = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        out += [(b["A"], b["B"], b["name"]) for b in loader]
    return out


def test_cached_dataset_gives_identical_batches_with_workers_and_never_rereads_files(tmp_path):
    root = _files(tmp_path)
    kw = dict(load_size=44, crop_size=32, seed=5, direction="BtoA")
    plain = AlignedDataset(root, "train", **kw)
    cached = AlignedDataset(root, "train", cache_images=True, **kw)
    # the two halves resized to 44x44 once; the grayscale file stays one channel
    assert cached.cache.nbytes == 5 * 2 * 44 * 44 * 3 + 2 * 44 * 44
    assert cached.cache.buffer.is_shared()
    want = _batches(plain, 0)
    for f in (root / "train").iterdir():  # the cache holds the pixels: the files are not read again
        f.unlink()
    for workers in (0, 2):
        got = _batches(cached, workers)
        assert [g[2] for g in got] == [w[2] for w in want]
        for (a, b, _), (wa, wb, _) in zip(got, want):
            assert torch.equal(a, wa) and torch.equal(b, wb)
