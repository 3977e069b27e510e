"""Torch data sources: fresh numbers generated forever from a split's MNIST digits (fixed
5-digit images, or lines of any length grouped by length), and batches from a stored dataset
split. All yield whole batches ``(images uint8 (B, 28, W), digits int64 (B, L), lengths (B,),
widths (B,))`` so workers do the composing; batch b of epoch e depends only on
(seed, rank, e, b)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from digitseq.core.constants import TEXT_ALPHABET
from digitseq.data import compose, formats, layouts, numbers, separators, storage


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
        params: layouts.NaturalParams | None = None,
        leading_zero=True,
    ):
        super().__init__(steps, seed, rank)
        self.images, self.labels = images, labels
        self.batch_size, self.layout, self.params = batch_size, layout, params
        self.leading_zero = leading_zero
        self.index = numbers.class_index(labels)

    def batch(self, epoch: int, b: int):
        img, digits, _, _ = compose.generate_fixed(
            self.images,
            self.labels,
            self.batch_size,
            self.rng(epoch, b),
            self.layout,
            self.leading_zero,
            self.params,
            self.index,
        )
        return fixed_batch(img, digits)


class LineBatches(_Batches):
    """Fresh lines of any length for the CTC reader: each batch holds numbers of one length
    (drawn uniformly in ``lengths``), padded to a multiple of ``pad_to`` columns, so a trainer
    sees a handful of shapes and little padding."""

    def __init__(self, images, labels, batch_size, steps, seed, layout="mix3", rank=0,
                 lengths=(1, 12), pad_to=32, p_format=0.0):  # fmt: skip
        super().__init__(steps, seed, rank)
        self.p_format = p_format  # share of batches of formatted numbers (separators drawn)
        self.images, self.labels = images, labels
        self.batch_size, self.layout, self.lengths, self.pad_to = (
            batch_size,
            layout,
            lengths,
            pad_to,
        )
        self.index = numbers.class_index(labels)

    def batch(self, epoch: int, b: int):
        rng = self.rng(epoch, b)
        if self.p_format and rng.random() < self.p_format:
            return formatted_batch(
                self.images,
                self.labels,
                self.batch_size,
                rng,
                self.layout,
                self.pad_to,
                self.index,
            )
        lines = compose.length_batch(
            self.images, self.labels, self.batch_size, rng, self.layout,
            self.lengths, self.pad_to, index=self.index,
        )  # fmt: skip
        return line_batch(lines)


def fixed_batch(images: np.ndarray, digits: np.ndarray):
    """A 5-digit batch in the common 4-tuple form."""
    n, length = digits.shape
    return (
        torch.from_numpy(np.array(images, dtype=np.uint8)),  # a copy: memmaps are read-only
        torch.from_numpy(digits.astype(np.int64)),
        torch.full((n,), length, dtype=torch.int64),
        torch.full((n,), images.shape[-1], dtype=torch.int64),
    )


def line_batch(lines: compose.Lines):
    """A ``Lines`` batch in the common 4-tuple form."""
    return as_batch(lines.images, lines.digits, lines.lengths, lines.widths)


def formatted_batch(images, labels, n: int, rng, layout, pad_to: int, index):
    """n formatted numbers (``formats.sample_texts``) drawn from a digit pool, as a batch."""
    texts = formats.sample_texts(n, rng)
    return text_batch(formats.compose_text_lines(images, labels, texts, rng, layout,
                                                 pad_to=pad_to, index=index))  # fmt: skip


def text_batch(lines: formats.TextLines):
    """A ``TextLines`` batch in the common 4-tuple form: labels are alphabet indices (digits
    0-9, then the separators of ``TEXT_ALPHABET``)."""
    classes, lengths = separators.encode_texts(lines.texts)
    labels = np.where(classes == separators.PAD_LABEL, numbers.PAD_LABEL, classes - 1)
    return as_batch(lines.images, labels, lengths, lines.widths)


def stored_batch(split: storage.Split, idx: np.ndarray, pad_to: int | None = None):
    """Numbers ``idx`` (sorted) of a stored split of either format in the common 4-tuple form;
    ``pad_to`` for line readers (``Split.cut_images``), None keeps the stored width."""
    return as_batch(split.cut_images(idx, pad_to), split.labels[idx], split.lengths[idx],
                    split.widths[idx])  # fmt: skip


def as_batch(images, digits, lengths, widths):
    """uint8 images, labels (padding 255 -> 0: masked by lengths), lengths, widths -> tensors."""
    digits = digits.astype(np.int64)
    digits[digits >= len(TEXT_ALPHABET)] = 0
    return (
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(digits),
        torch.from_numpy(lengths.astype(np.int64)),
        torch.from_numpy(widths.astype(np.int64)),
    )


class StoredBatches(_Batches):
    """Shuffled batches from a stored split (a new permutation every epoch). With ``pad_to``
    (line readers), numbers of similar width are batched together: the permutation is sorted
    by width within windows of 64 batches, then the batches are shuffled, so little compute
    goes to padding and a trainer sees few shapes."""

    WINDOW = 64  # batches

    def __init__(
        self,
        split: storage.Split,
        batch_size: int,
        steps: int | None,
        seed: int,
        rank: int = 0,
        world: int = 1,
        pad_to: int | None = None,
    ):
        n = len(split)
        per_epoch = n // (batch_size * world)
        super().__init__(min(steps, per_epoch) if steps else per_epoch, seed, 0)
        self.split, self.batch_size, self.rank_, self.world = split, batch_size, rank, world
        self.pad_to = pad_to
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(len(self.split))
            if self.pad_to:
                group = self.batch_size * self.world  # one global batch: every rank's share
                win = group * self.WINDOW
                widths = self.split.widths
                for s in range(0, len(perm), win):
                    chunk = perm[s : s + win]
                    perm[s : s + win] = chunk[np.argsort(widths[chunk], kind="stable")]
                whole = len(perm) // group
                perm = perm[: whole * group].reshape(whole, group)[rng.permutation(whole)].ravel()
            self._order = (epoch, perm)
        return self._order[1]

    def batch(self, epoch: int, b: int):
        start = (b * self.world + self.rank_) * self.batch_size
        idx = np.sort(self.order(epoch)[start : start + self.batch_size])  # memmap-friendly
        return stored_batch(self.split, idx, self.pad_to)


def stream(batches: _Batches, workers: int, pin: bool = False):
    """Every batch of the run's epochs, in order, read by ``workers`` processes (0: this one).
    Lazy: nothing is read (no worker starts) until the first batch is asked for, so the epochs
    that ``batches.set_epochs`` chooses afterwards are the ones read."""
    yield from DataLoader(
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
    img, digits, _, lay = compose.generate_fixed(images, labels, n, rng, layout)
    return torch.from_numpy(img), torch.from_numpy(digits.astype(np.int64)), lay


def line_set(images, labels, n: int, seed: int, layout="mix3", lengths=(1, 12), pad_to=32,
             batch_size: int = 256) -> list[tuple]:  # fmt: skip
    """A fixed validation set of lines as batches of similar width (sorted by width, each
    padded to its widest rounded up to ``pad_to``): few shapes, little padding, stable order."""
    rng = np.random.default_rng([seed, 1_000_003])
    lines = compose.generate(images, labels, n, rng, layout, lengths=lengths)
    order = np.argsort(lines.widths, kind="stable")
    return [
        line_batch(lines.take(order[i : i + batch_size], pad_to)) for i in range(0, n, batch_size)
    ]


def text_set(images, labels, n: int, seed: int, layout="people", pad_to=32,
             batch_size: int = 256) -> list[tuple]:  # fmt: skip
    """A fixed validation set of formatted numbers (``formats.sample_texts``) as batches."""
    rng = np.random.default_rng([seed, 1_000_033])
    index = numbers.class_index(labels)
    return [
        formatted_batch(images, labels, min(batch_size, n - i), rng, layout, pad_to, index)
        for i in range(0, n, batch_size)
    ]


def split_batches(
    split: storage.Split, n: int, batch_size: int = 1024, pad_to: int | None = None
) -> list[tuple]:
    """The first n numbers of a stored split as batches in the common form; with ``pad_to``
    (line readers) sorted by width first, each batch cut to its widest (few shapes)."""
    n = min(n, len(split))
    order = np.arange(n) if pad_to is None else np.argsort(split.widths[:n], kind="stable")
    return [
        stored_batch(split, np.sort(order[i : i + batch_size]), pad_to)
        for i in range(0, n, batch_size)
    ]
