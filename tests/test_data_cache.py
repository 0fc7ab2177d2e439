"""--cache_images: decoded once into shared memory, read by DataLoader workers, identical batches."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader

ROOT = Path(__file__).resolve().parents[1]


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


def test_too_little_shared_memory_is_one_sentence_before_decoding(tmp_path, monkeypatch):
    import pix2pix_tr.data.cache as cache_mod
    from pix2pix_tr.data import DatasetError

    root = _files(tmp_path)
    monkeypatch.setattr(cache_mod, "shm_free_bytes", lambda: 1000)
    decoded = []
    monkeypatch.setattr(AlignedDataset, "resized_pair", lambda self, i: decoded.append(i))
    with pytest.raises(DatasetError) as err:
        AlignedDataset(root, "train", load_size=44, crop_size=32, cache_images=True)
    message = str(err.value)
    assert "--cache_images needs about 0 MB of shared memory (/dev/shm)" in message
    assert "only 0 MB are free there" in message and "--shm-size" in message and "without --cache_images" in message
    assert decoded == []  # refused before any file was decoded


def test_a_failing_shared_memory_allocation_is_one_sentence(tmp_path, monkeypatch):
    import pix2pix_tr.data.cache as cache_mod
    from pix2pix_tr.data import DatasetError

    def no_shm(self):
        raise RuntimeError("unable to allocate shared memory(shm) for file </torch_1_2_0>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_shm)
    monkeypatch.setattr(cache_mod, "shm_free_bytes", lambda: None)
    with pytest.raises(DatasetError, match=r"--cache_images needs 0 MB of shared memory \(/dev/shm\) for the decoded "
                                           r"images, but it could not provide them: give the machine"):
        AlignedDataset(_files(tmp_path), "train", load_size=44, crop_size=32, cache_images=True)


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("unshare") is None,
                    reason="needs Linux mount namespaces (unshare)")
def test_train_py_on_a_small_dev_shm_exits_with_the_advice(tmp_path):
    """A real 4 MB /dev/shm (a private mount namespace) and 6 MB of resized pairs: train.py says what to do."""
    root = tmp_path / "pairs"
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)).save(root / "train" / f"{k}.png")
    script = (f"mount -t tmpfs -o size=4m tmpfs /dev/shm && exec {shlex.quote(sys.executable)} train.py --dataroot "
              f"{shlex.quote(str(root))} --checkpoints_dir {shlex.quote(str(tmp_path / 'ck'))} --name shm "
              "--ngf 8 --ndf 8 --device cpu --max_iters 1 --num_threads 0 --cache_images")
    proc = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a private /dev/shm here ({proc.stderr.strip()[:200]})")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-2000:])
    assert "--cache_images needs about 6 MB of shared memory (/dev/shm)" in proc.stderr  # 12 x 2 x 286 x 286 x 3
    assert "--shm-size" in proc.stderr + proc.stdout
