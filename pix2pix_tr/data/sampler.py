"""An epoch-aware sampler and the DataLoader settings that go with it.

Why not ``RandomSampler``/``DistributedSampler``? pix2pix's random crop and flip must be reproducible when a run is
resumed in the middle of an epoch, and must not depend on the number of worker processes or on whether they
are persistent. :class:`EpochSampler` therefore yields ``(epoch, index)`` pairs: the main process decides which
sample and which epoch, and :class:`~pix2pix_tr.data.aligned.AlignedDataset` derives the sample's random draw from
``(seed, epoch, index)`` inside whichever worker loads it. The order of samples in epoch ``e`` is a permutation
seeded by ``(seed, e)``, split across ranks like ``DistributedSampler`` (rank ``r`` takes positions
``r, r + world_size, ...`` of the padded permutation).

Typical loop::

    sampler = EpochSampler(len(dataset), shuffle=True, seed=opt.seed, rank=rank, world_size=world)
    loader = make_dataloader(dataset, opt.batch_size, sampler, num_workers=4, pin_memory=True)
    for epoch in range(first_epoch, last_epoch + 1):
        sampler.set_epoch(epoch, start=samples_done_this_epoch if resuming else 0)
        for batch in loader:
            ...
"""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pix2pix_tr.data.errors import DatasetError


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for this rank's share of a seeded per-epoch permutation of ``range(n)``.

    Args:
        n: dataset length.
        shuffle: permute per epoch (seeded by ``(seed, epoch)``); ``False`` keeps ``0..n-1``.
        seed: same seed, same epoch -> same order, on every machine and in every resumed run.
        rank, world_size: as ``DistributedSampler``. Without ``drop_last`` the permutation is padded by
            wrapping around so that every rank gets ``ceil(n / world_size)`` samples; with it, it is truncated to
            ``floor(n / world_size) * world_size``.
        drop_last: see above (it does *not* drop an incomplete final batch; the DataLoader does that).

    ``set_epoch(epoch, start)`` selects the epoch and skips the first ``start`` of this rank's samples (to resume
    mid-epoch: ``start`` = number of samples this rank already consumed in that epoch). ``len(sampler)`` is the
    number of samples the next iteration yields; ``num_samples`` is the full per-epoch count for this rank.
    """

    def __init__(self, n: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if int(n) < 1:
            raise DatasetError(f"the sampler needs a non-empty dataset, got {n} samples")
        if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
            raise DatasetError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if drop_last and n < world_size:
            raise DatasetError(f"drop_last with {n} samples and world_size {world_size} leaves nothing to sample")
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        if self.drop_last:
            self.num_samples = self.n // self.world_size
        else:
            self.num_samples = -(-self.n // self.world_size)
        self.total_size = self.num_samples * self.world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch for the next iteration and skip its first ``start`` samples (this rank's count)."""
        if not 0 <= int(start) <= self.num_samples:
            raise DatasetError(f"start must be in [0, {self.num_samples}] (this rank's samples per epoch), got {start}")
        self.epoch, self.start = int(epoch), int(start)

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's full index list for ``epoch`` (before ``start`` is applied)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, int(epoch) & 0xFFFFFFFFFFFFFFFF,
                                           0x5A4D]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n:  # pad by wrapping around (possibly several times for tiny datasets)
            order = np.resize(order, self.total_size)
        else:
            order = order[: self.total_size]
        return order[self.rank:self.total_size:self.world_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.epoch_indices(epoch)[self.start:]:
            yield epoch, index

    def __len__(self) -> int:
        return self.num_samples - self.start

    def __repr__(self) -> str:
        return (f"EpochSampler(n={self.n}, shuffle={self.shuffle}, seed={self.seed}, rank={self.rank}, "
                f"world_size={self.world_size}, drop_last={self.drop_last}, epoch={self.epoch}, start={self.start})")


def _seed_worker(worker_id: int) -> None:
    """Seed python/numpy/torch in a worker from torch's per-worker seed (itself derived from the loader's generator).

    The dataset's random draw does not use these (it comes from ``(seed, epoch, index)``); this only makes any
    *other* randomness in user transforms reproducible.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_dataloader(dataset: Dataset, batch_size: int, sampler: Sampler, *, num_workers: int = 0,
                    pin_memory: bool = False, persistent_workers: bool | None = None, drop_last: bool = False,
                    prefetch_factor: int | None = None, seed: int | None = None) -> DataLoader:
    """A DataLoader over ``sampler`` with reproducible workers.

    Args:
        batch_size: samples per batch (pix2pix's default is 1).
        sampler: usually an :class:`EpochSampler`; call its ``set_epoch`` before each epoch.
        num_workers: worker processes that decode and transform images (0 = in the main process). Batches are
            identical for any number of workers, because the random draw comes from ``(seed, epoch, index)``.
        pin_memory: page-locked host memory for faster host->GPU copies (use with CUDA and ``non_blocking=True``).
        persistent_workers: keep workers alive across epochs (default: ``True`` when ``num_workers > 0``); safe
            because the epoch travels with each key, not as worker-side state.
        drop_last: drop an incomplete final batch (useful with BatchNorm and batch sizes > 1).
        prefetch_factor: batches loaded in advance per worker (torch default 2 when ``num_workers > 0``).
        seed: seeds the loader's generator (worker base seeds); default: the sampler's ``seed`` or 0.
    """
    if int(batch_size) < 1:
        raise DatasetError(f"--batch_size must be >= 1, got {batch_size}")
    if int(num_workers) < 0:
        raise DatasetError(f"--num_threads (DataLoader workers) must be >= 0, got {num_workers}")
    num_workers = int(num_workers)
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    generator = torch.Generator()
    generator.manual_seed(int(seed if seed is not None else getattr(sampler, "seed", 0)) & 0xFFFFFFFFFFFFFFFF)
    kwargs = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = bool(persistent_workers)
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = int(prefetch_factor)
    return DataLoader(dataset, batch_size=int(batch_size), sampler=sampler, num_workers=num_workers,
                      pin_memory=bool(pin_memory), drop_last=bool(drop_last), worker_init_fn=_seed_worker,
                      generator=generator, **kwargs)
