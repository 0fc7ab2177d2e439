"""The data path to the device on fake CUDA tensors (tier ``fake_cuda``; no GPU needed).

The DataLoader builds each batch on the host with real values, as in training (``--cache_images`` and
``--augment_on_device`` included, at pix2pix's full 286 -> 256 jitter); then ``AlignedDataset.to_device`` runs on
a fake GPU exactly as the training loop calls it, in both memory formats. The watch of ``tests/fake_cuda.py``
requires no host read, no device-to-host copy, no op mixing devices, and no blocking host-to-device copy: every
upload of a batch is ``non_blocking=True``, which on a GPU lets the copy of a pinned batch overlap the previous
iteration. (The one-time upload of the 256-entry table of ``--augment_on_device``, cached per device, is blocking
and is counted apart.)

Pinned memory itself cannot be made here: page-locked host memory comes from the CUDA driver. The cuda tier loads
pinned batches (tests/test_cuda.py::test_augment_on_device_on_cuda_equals_the_cpu_batches).
"""

from __future__ import annotations

import pytest
import torch
from fake_cuda import CUDA, is_fake_cuda

from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader
from pix2pix_tr.data import device_augment
from pix2pix_tr.data.device_augment import crop_flip

pytestmark = pytest.mark.fake_cuda

LOAD, CROP, BATCH = 286, 256, 3  # pix2pix's jitter, at full size
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def host_batch(dataset: AlignedDataset) -> dict:
    """One collated batch from the training loader, with real values on the host."""
    sampler = EpochSampler(len(dataset), shuffle=True, seed=1)
    sampler.set_epoch(1)
    return next(iter(make_dataloader(dataset, BATCH, sampler, num_workers=0, seed=1)))


@pytest.mark.parametrize("memory_format", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("cache_images,augment_on_device", [(False, False), (True, False), (False, True),
                                                            (True, True)],
                         ids=["default", "cache_images", "augment_on_device", "cache_images-augment_on_device"])
def test_training_batches_reach_the_device_without_a_synchronisation(ab_root, fake_gpu, cache_images,
                                                                       augment_on_device, memory_format):
    dataset = AlignedDataset(ab_root, "train", direction="BtoA", load_size=LOAD, crop_size=CROP, seed=3,
                             max_dataset_size=4, cache_images=cache_images, augment_on_device=augment_on_device)
    batch = host_batch(dataset)
    if augment_on_device:  # the halves travel uncropped, as uint8, with the draw
        assert batch["A"].dtype == torch.uint8 and batch["A"].shape == (BATCH, LOAD, LOAD, 3)
    with fake_gpu:
        real_A, real_B = dataset.to_device(batch, CUDA, memory_format)  # what the training loop calls
        for t in (real_A, real_B):
            assert is_fake_cuda(t) and t.dtype == torch.float32 and t.shape == (BATCH, 3, CROP, CROP)
            assert t.is_contiguous(memory_format=memory_format)
        if augment_on_device:  # a second batch: the lookup table is on the device now, nothing is uploaded twice
            uploads = list(fake_gpu.watch.blocking_uploads)
            dataset.to_device(batch, CUDA, memory_format)
            assert fake_gpu.watch.blocking_uploads == uploads
    fake_gpu.assert_no_sync()
    table = [u for u in fake_gpu.watch.blocking_uploads if "(256,) torch.float32" in u]
    assert len(table) == (1 if augment_on_device else 0), fake_gpu.watch.blocking_uploads
    assert [u for u in fake_gpu.watch.blocking_uploads if u not in table] == []  # every batch copy is non-blocking


def test_crop_flip_gathers_on_the_device_and_a_host_table_would_be_caught(fake_gpu, monkeypatch):
    """crop_flip at full size with its inputs on the device. The same call with the conversion table left on the
    host (the kind of bug this tier is for) runs without an error: torch indexes a host tensor with device indices
    by copying them to the host (a synchronisation) and returns a host batch. The watch records it."""
    with fake_gpu:
        images = torch.randint(0, 256, (4, LOAD, LOAD, 3), dtype=torch.uint8, device=CUDA)
        crop = torch.randint(0, LOAD - CROP + 1, (4, 2), device=CUDA)
        flip = torch.rand(4, device=CUDA) < 0.5
        out = crop_flip(images, crop, flip, (CROP, CROP), memory_format=torch.channels_last)
        assert is_fake_cuda(out) and out.shape == (4, 3, CROP, CROP) and out.dtype == torch.float32
        assert out.is_contiguous(memory_format=torch.channels_last)
    fake_gpu.assert_no_sync()

    host_table = device_augment.uint8_to_float_table
    monkeypatch.setattr(device_augment, "uint8_to_float_table", lambda device: host_table("cpu"))
    with fake_gpu:
        out = crop_flip(images, crop, flip, (CROP, CROP))
    assert out.device.type == "cpu"
    assert fake_gpu.watch.events and all("['cpu', 'cuda:0']" in e for e in fake_gpu.watch.events), \
        fake_gpu.watch.events


def test_pinned_memory_needs_the_cuda_driver(ab_root, fake_gpu):
    """What a pinned batch then does (to_device with non_blocking=True) runs above; pinning itself cannot run here."""
    batch = host_batch(AlignedDataset(ab_root, "train", direction="BtoA", load_size=LOAD, crop_size=CROP,
                                      max_dataset_size=4))
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: pinned batches are the cuda tier's (tests/test_cuda.py)")
    with fake_gpu, pytest.raises(Exception):
        batch["A"].to(CUDA).cpu().pin_memory()  # no fake kernel for aten::_pin_memory
    with pytest.raises(RuntimeError):
        batch["A"].pin_memory()  # a real host tensor: page-locked memory comes from the CUDA driver
    pytest.skip("pinned (page-locked) host memory is allocated by the CUDA driver: Tensor.pin_memory() fails without "
                "a GPU and fake tensors have no aten::_pin_memory kernel; the non-blocking copies of a pinned batch "
                "run above, pinned loading in the cuda tier (tests/test_cuda.py::"
                "test_augment_on_device_on_cuda_equals_the_cpu_batches)")
