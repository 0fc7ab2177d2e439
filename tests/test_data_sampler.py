"""EpochSampler / make_dataloader: determinism, resume, rank split, workers == no workers, bad input."""

import pytest
import torch

from pix2pix_tr.data import AlignedDataset, DatasetError, EpochSampler, make_dataloader


def _order(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_permutation_is_seeded_per_epoch():
    a, b, c = EpochSampler(10, seed=1), EpochSampler(10, seed=1), EpochSampler(10, seed=2)
    assert _order(a, 3) == _order(b, 3)
    assert all(e == 3 for e, _ in _order(a, 3))
    assert sorted(i for _, i in _order(a, 3)) == list(range(10))
    assert [i for _, i in _order(a, 3)] != [i for _, i in _order(a, 4)]
    assert [i for _, i in _order(a, 3)] != [i for _, i in _order(c, 3)]
    assert [i for _, i in _order(EpochSampler(5, shuffle=False), 7)] == [0, 1, 2, 3, 4]


def test_start_resumes_mid_epoch():
    s = EpochSampler(9, seed=0)
    full = _order(s, 2)
    assert _order(s, 2, start=4) == full[4:]
    assert len(s) == 5 and s.num_samples == 9
    s.set_epoch(3)
    assert len(s) == 9  # start applies to the epoch it was given with
    with pytest.raises(DatasetError, match=r"start must be in \[0, 9\] \(this rank's samples per epoch\), got 10"):
        s.set_epoch(2, start=10)


@pytest.mark.parametrize("n,world,drop_last", [(10, 3, False), (10, 3, True), (12, 4, False), (2, 3, False)])
def test_ranks_split_the_epoch(n, world, drop_last):
    parts = [_order(EpochSampler(n, seed=5, rank=r, world_size=world, drop_last=drop_last), 1) for r in range(world)]
    lengths = {len(p) for p in parts}
    assert lengths == {n // world if drop_last else -(-n // world)}
    merged = [i for p in parts for _, i in p]
    if drop_last:
        assert len(set(merged)) == len(merged) == (n // world) * world  # disjoint, the remainder dropped
    else:
        assert set(merged) == set(range(n))  # every sample seen, padding repeats a few
        assert len(merged) == -(-n // world) * world
    single = [i for _, i in _order(EpochSampler(n, seed=5), 1)]
    interleaved = [parts[r][k][1] for k in range(len(parts[0])) for r in range(world)]
    assert interleaved[: min(n, len(interleaved))] == single[: min(n, len(interleaved))]


def test_bad_sampler_arguments():
    with pytest.raises(DatasetError, match="rank must be in \\[0, world_size\\), got rank=2, world_size=2"):
        EpochSampler(4, rank=2, world_size=2)
    with pytest.raises(DatasetError, match="the sampler needs a non-empty dataset, got 0 samples"):
        EpochSampler(0)
    with pytest.raises(DatasetError, match="--batch_size must be >= 1, got 0"):
        make_dataloader(None, 0, EpochSampler(3))


def _batches(loader, sampler, epochs, start=0):
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch, start)
        for batch in loader:
            out.append((batch["name"], batch["A"].clone(), batch["B"].clone()))
    return out


def test_workers_give_the_same_batches_as_no_workers(ab_root):
    ds = AlignedDataset(ab_root, "train", direction="BtoA", load_size=72, crop_size=64, seed=11)
    plain = EpochSampler(len(ds), seed=4)
    ref = _batches(make_dataloader(ds, 3, plain), plain, [0, 1])
    pooled = EpochSampler(len(ds), seed=4)
    loader = make_dataloader(ds, 3, pooled, num_workers=2, persistent_workers=True)
    got = _batches(loader, pooled, [0, 1])
    assert len(ref) == len(got) == 6
    assert ref[0][0] != ref[3][0]  # epochs differ in order
    for (n1, a1, b1), (n2, a2, b2) in zip(ref, got):
        assert n1 == n2
        torch.testing.assert_close(a1, a2, rtol=0, atol=0)
        torch.testing.assert_close(b1, b2, rtol=0, atol=0)
    # a resumed epoch (start = samples already seen) continues with exactly the remaining samples
    resumed = _batches(make_dataloader(ds, 3, plain), plain, [1], start=3)
    assert [r[0] for r in resumed] == [r[0] for r in ref[4:]]
    torch.testing.assert_close(resumed[0][1], ref[4][1], rtol=0, atol=0)


def test_more_loader_errors():
    with pytest.raises(DatasetError, match="drop_last with 2 samples and world_size 3 leaves nothing to sample"):
        EpochSampler(2, world_size=3, drop_last=True)
    with pytest.raises(DatasetError, match=r"--num_threads \(DataLoader workers\) must be >= 0, got -1"):
        make_dataloader(None, 1, EpochSampler(3), num_workers=-1)
