"""--augment_on_device: crop, flip and conversion on the training device give the default path's batches exactly."""

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.data import AlignedDataset, DatasetError, EpochSampler, make_dataloader
from pix2pix_tr.data.device_augment import crop_flip, uint8_to_float_table


def _files(root, sizes, gray=True):
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "train" / f"{k}.png")
    if gray:
        h, w = sizes[0]
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(root / "train" / "gray.png")
    return root


def _batches(ds, workers=0, batch_size=3, epochs=(1, 2)):
    sampler = EpochSampler(len(ds), shuffle=True, seed=1)
    loader = make_dataloader(ds, batch_size, sampler, num_workers=workers, seed=1)
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in loader:
            out.append((*ds.to_device(batch, "cpu"), batch["name"]))
    return out


def _assert_same(got, want):
    assert len(got) == len(want) and [g[2] for g in got] == [w[2] for w in want]
    for (a, b, _), (wa, wb, _) in zip(got, want):
        assert a.dtype == wa.dtype == torch.float32
        assert torch.equal(a, wa) and torch.equal(b, wb)


@pytest.mark.parametrize("preprocess,load,crop", [("resize_and_crop", 44, 32), ("crop", 44, 24),
                                                  ("scale_width_and_crop", 50, 30), ("scale_width", 36, 24),
                                                  ("none", 44, 32)])
@pytest.mark.parametrize("direction,no_flip,input_nc", [("BtoA", False, 3), ("AtoB", True, 1)])
def test_device_path_equals_the_default_path_bit_for_bit(tmp_path, preprocess, load, crop, direction, no_flip,
                                                         input_nc):
    root = _files(tmp_path, [(38, 76)] * 5)  # 38 is not a multiple of 4: "none" and scale_width resize it
    kw = dict(preprocess=preprocess, load_size=load, crop_size=crop, seed=5, direction=direction,
              no_flip=no_flip, input_nc=input_nc)
    want = _batches(AlignedDataset(root, "train", **kw))
    device_ds = AlignedDataset(root, "train", augment_on_device=True, **kw)
    item = device_ds[(1, 0)]
    assert item["A"].dtype == torch.uint8 and item["A"].shape[2] == input_nc
    assert item["crop"].dtype == torch.int64 and item["flip"].dtype == torch.bool
    _assert_same(_batches(device_ds), want)
    cached = AlignedDataset(root, "train", augment_on_device=True, cache_images=True, **kw)
    _assert_same(_batches(cached), want)
    if not no_flip:  # the draw does flip some samples, so the flip path is exercised
        assert any(bool(device_ds[(e, i)]["flip"]) for e in (1, 2) for i in range(len(device_ds)))


def test_device_path_with_loader_workers_and_channels_last(tmp_path):
    root = _files(tmp_path, [(40, 80)] * 6)
    kw = dict(load_size=44, crop_size=32, seed=2)
    want = _batches(AlignedDataset(root, "train", **kw))
    ds = AlignedDataset(root, "train", augment_on_device=True, cache_images=True, **kw)
    _assert_same(_batches(ds, workers=2), want)
    sampler = EpochSampler(len(ds), shuffle=False, seed=1)
    batch = next(iter(make_dataloader(ds, 4, sampler)))
    a, _ = ds.to_device(batch, "cpu", torch.channels_last)
    assert a.is_contiguous(memory_format=torch.channels_last) and a.shape == (4, 3, 32, 32)


def test_mixed_sizes_work_under_resize_and_crop_and_are_refused_otherwise(tmp_path):
    root = _files(tmp_path, [(40, 80), (48, 96), (40, 80)], gray=False)
    ds = AlignedDataset(root, "train", load_size=44, crop_size=32, augment_on_device=True)
    assert ds.output_size == (32, 32) and len(_batches(ds)) == 2
    with pytest.raises(DatasetError) as err:
        AlignedDataset(root, "train", preprocess="crop", crop_size=32, augment_on_device=True)
    message = str(err.value)
    assert "--augment_on_device" in message and "1.png" in message and "resize_and_crop" in message


def test_crop_flip_against_slicing_and_bad_input():
    images = torch.randint(0, 256, (3, 9, 11, 2), dtype=torch.uint8)
    crop, flip = torch.tensor([[0, 0], [3, 2], [5, 4]]), torch.tensor([False, True, True])
    out = crop_flip(images, crop, flip, (5, 6))
    for i in range(3):
        x, y = crop[i].tolist()
        want = images[i, y:y + 5, x:x + 6].permute(2, 0, 1).float().div(127.5).sub(1.0)
        assert torch.equal(out[i], want.flip(-1) if flip[i] else want)
    table = uint8_to_float_table("cpu")
    assert table[0] == -1.0 and table[255] == 1.0 and table.dtype == torch.float32
    with pytest.raises(ValueError, match="uint8"):
        crop_flip(images.float(), crop, flip, (5, 6))
    with pytest.raises(ValueError, match="does not fit"):
        crop_flip(images, crop, flip, (10, 6))
