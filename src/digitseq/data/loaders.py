"""Torch data sources: fresh sequences generated forever from a split's MNIST digits, and
batches from a stored dataset split. Both yield whole batches (uint8 images, int64 labels)
so workers do the composing; batch b of epoch e depends only on (seed, rank, e, b)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from digitseq.data import compose, storage


class SplitDataset(Dataset):
    """A stored split as a map-style Dataset: item i -> (float image (1, 28, 140) in [0, 1],
    int64 digits (5,)). Reads from the memory map, so any split size fits."""

    def __init__(self, split: storage.Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        img = torch.from_numpy(np.array(self.split.images[i])).float().div_(255).unsqueeze(0)
        return img, torch.from_numpy(self.split.labels[i].astype(np.int64))


class _Batches(IterableDataset):
    """Yields the batches of epochs [first, last) in one stream (workers start once); worker w
    of k makes global batches w, w+k, ... which the DataLoader's round-robin puts back in
    order, so the stream does not depend on the number of workers."""

    def __init__(self, steps: int, seed: int, rank: int = 0):
        self.steps, self.seed, self.rank = steps, seed, rank
        self.first, self.last = 0, 1

    def set_epochs(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def rng(self, epoch: int, b: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, epoch, b])

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for g in range(self.first * self.steps + wid, self.last * self.steps, nw):
            yield self.batch(*divmod(g, self.steps))

    def __len__(self) -> int:  # batches per epoch
        return self.steps

    def batch(self, epoch: int, b: int):
        raise NotImplementedError


class StreamBatches(_Batches):
    """Fresh numbers from a digit pool (e.g. MNIST train digits 0-49,999) every batch."""

    def __init__(
        self,
        images,
        labels,
        batch_size,
        steps,
        seed,
        layout="mixed",
        rank=0,
        params: compose.NaturalParams | None = None,
        leading_zero=True,
    ):
        super().__init__(steps, seed, rank)
        self.images, self.labels = images, labels
        self.batch_size, self.layout, self.params = batch_size, layout, params
        self.leading_zero = leading_zero
        self.index = compose.class_index(labels)

    def batch(self, epoch: int, b: int):
        img, digits, _, _ = compose.generate(
            self.images,
            self.labels,
            self.batch_size,
            self.rng(epoch, b),
            self.layout,
            self.leading_zero,
            self.params,
            self.index,
        )
        return torch.from_numpy(img), torch.from_numpy(digits.astype(np.int64))


class StoredBatches(_Batches):
    """Shuffled batches from a stored split (a new permutation every epoch)."""

    def __init__(
        self,
        split: storage.Split,
        batch_size: int,
        steps: int | None,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ):
        n = len(split)
        per_epoch = n // (batch_size * world)
        super().__init__(min(steps, per_epoch) if steps else per_epoch, seed, 0)
        self.split, self.batch_size, self.rank_, self.world = split, batch_size, rank, world

    def batch(self, epoch: int, b: int):
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
        start = (b * self.world + self.rank_) * self.batch_size
        idx = np.sort(perm[start : start + self.batch_size])  # sorted: memmap-friendly reads
        img = np.asarray(self.split.images[idx])
        return torch.from_numpy(img), torch.from_numpy(self.split.labels[idx].astype(np.int64))


def loader(batches: _Batches, workers: int, pin: bool = False) -> DataLoader:
    return DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


def fixed_set(images, labels, n: int, seed: int, layout: str = "mixed"):
    """A fixed in-memory set (e.g. for validation): (uint8 images, int64 labels, layouts)."""
    rng = np.random.default_rng([seed, 1_000_003])
    img, digits, _, lay = compose.generate(images, labels, n, rng, layout)
    return torch.from_numpy(img), torch.from_numpy(digits.astype(np.int64)), lay
