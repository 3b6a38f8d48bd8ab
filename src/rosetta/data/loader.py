"""Training and evaluation batches: PaddleOCR's preprocessing and label padding, an optional RecAug-style
augmentation, and a sampler whose order depends only on the seed and the data position.

The position (per stream: epoch and index into that epoch's permutation) is all a checkpoint needs to
continue the same sample order; augmentation is seeded per sample from the same coordinates, so neither
worker count nor restarts change a batch. Under DDP every rank walks the same global order and takes
its own slice of each batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from rosetta.errors import RosettaError
from rosetta_infer.charset import Charset
from rosetta_infer.preprocess import resize_norm_img

# A sample key: (index in the concatenated dataset, augmentation seed words).
SampleKey = tuple[int, tuple[int, ...]]


@dataclass(frozen=True)
class Stream:
    """A range of the concatenated training dataset that fills ``per_batch`` places of each global batch once
    every stream has joined; before its ``start_step`` it takes none, and the streams already there share its
    places in proportion to their own."""

    name: str
    offset: int
    size: int
    per_batch: int
    start_step: int = 0


def split_batch(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` places shared by ``weights``, rounding so the shares add up exactly."""
    weights = np.asarray(weights, dtype=np.float64)
    raw = total * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


# The epoch number of the head pass: the first ``head_steps`` batches, read from the first samples of each
# stream taking part in them, before epoch 0 (``train.curriculum_steps``).
HEAD_PASS = -1


def _seed_word(epoch: int) -> int:
    return 2**31 - 1 if epoch == HEAD_PASS else epoch  # seed words must not be negative


class BatchPlan:
    """The global order of training batches: each stream cycles through per-epoch permutations.

    ``position`` maps a stream's name to ``[epoch, index]``: the next sample of that stream is
    ``permutation(epoch)[index]``. How many places of a batch a stream fills depends only on the step
    (``shares``): its ``per_batch`` once every stream has joined, none before its ``start_step``. A stream
    drops its tail when fewer samples than its share are left in the epoch (PaddleOCR's drop_last), then
    starts the next permutation. With ``head_steps`` the plan starts with a head pass (epoch ``HEAD_PASS``):
    a shuffled pass over the first samples of each stream, as many as its shares of the first ``head_steps``
    batches (fewer when the stream holds fewer), then epoch 0 over everything as without it. A set written
    easiest first (the synth renderer lists its plain words first) makes it a curriculum; a stream that joins
    after the head pass starts at epoch 0.
    """

    def __init__(self, streams: Sequence[Stream], seed: int, shuffle: bool, head_steps: int = 0):
        self.streams = list(streams)
        self.seed = seed
        self.shuffle = shuffle
        self.head_steps = head_steps
        self._shares: dict[tuple[bool, ...], tuple[int, ...]] = {}
        if not any(s.per_batch for s in self.streams if s.start_step == 0):
            raise RosettaError("no training stream takes part in the first batches; let a source with a share of "
                               "train.batch_ratio start at step 0 (train.source_start_step)")
        for sid, s in enumerate(self.streams):
            most = max(self.shares(step)[sid] for step in self._change_steps())
            if most > s.size:
                raise RosettaError(f"training set {s.name} has {s.size} samples, fewer than the {most} one batch "
                                   "takes from it; lower train.batch_size or add data")
        self._head_sizes = [min(s.size, self._places_before(sid, head_steps)) for sid, s in enumerate(self.streams)]
        self._perms: dict[int, tuple[int, np.ndarray]] = {}  # stream -> (epoch, permutation): one epoch at a time

    @property
    def global_batch(self) -> int:
        return sum(s.per_batch for s in self.streams)

    def _change_steps(self) -> list[int]:
        return sorted({0, *(s.start_step for s in self.streams)})

    def shares(self, step: int) -> tuple[int, ...]:
        """Places of the batch at ``step`` that each stream fills."""
        joined = tuple(step >= s.start_step for s in self.streams)
        if joined not in self._shares:
            weights = [s.per_batch if j else 0 for s, j in zip(self.streams, joined)]
            self._shares[joined] = tuple(split_batch(self.global_batch, weights))
        return self._shares[joined]

    def _places_before(self, sid: int, step: int) -> int:
        """How many samples stream ``sid`` gives to the batches before ``step``."""
        bounds = [b for b in self._change_steps() if b < step] + [step]
        return sum(self.shares(a)[sid] * (b - a) for a, b in zip(bounds, bounds[1:]))

    def start(self) -> dict[str, list[int]]:
        return {s.name: [HEAD_PASS if self.head_steps and self._head_sizes[i] else 0, 0]
                for i, s in enumerate(self.streams)}

    def epoch_size(self, stream_id: int, epoch: int) -> int:
        return self._head_sizes[stream_id] if epoch == HEAD_PASS else self.streams[stream_id].size

    def head_pass_note(self, position: dict[str, list[int]]) -> str | None:
        """One line for the training log while ``position`` is inside the head pass."""
        if not any(epoch == HEAD_PASS for epoch, _ in position.values()):
            return None
        heads = ", ".join(f"{s.name}'s first {self._head_sizes[i]}" for i, s in enumerate(self.streams)
                          if self._head_sizes[i])
        return (f"curriculum (train.curriculum_steps): the first {self.head_steps} steps read only {heads} samples "
                "(the synth renderer lists its plain words first), then epoch 0 starts")

    def joining_note(self, step: int) -> str | None:
        """One line when a stream joins the batches at ``step`` (``train.source_start_step``)."""
        joining = [s.name for s in self.streams if s.start_step == step and step > 0]
        if not joining:
            return None
        shares = ", ".join(f"{s.name} {n}" for s, n in zip(self.streams, self.shares(step)) if n)
        verb = "joins" if len(joining) == 1 else "join"
        return f"step {step}: {' and '.join(joining)} {verb} the batches (train.source_start_step): {shares} a batch"

    def permutation(self, stream_id: int, epoch: int) -> np.ndarray:
        cached = self._perms.get(stream_id)
        if cached is None or cached[0] != epoch:
            size = self.epoch_size(stream_id, epoch)
            perm = (np.random.default_rng([self.seed, stream_id, _seed_word(epoch)]).permutation(size)
                    if self.shuffle else np.arange(size))
            cached = self._perms[stream_id] = (epoch, perm)
        return cached[1]

    def next_batch(self, position: dict[str, list[int]], step: int = 0
                   ) -> tuple[list[SampleKey], dict[str, list[int]]]:
        """The global batch at ``position`` (the batch of ``step``) and the position after it."""
        keys: list[SampleKey] = []
        after = {}
        for sid, (s, n) in enumerate(zip(self.streams, self.shares(step))):
            epoch, index = self._next(sid, position[s.name], n)
            if n:
                perm = self.permutation(sid, epoch)
                for j in range(index, index + n):
                    keys.append((s.offset + int(perm[j]), (self.seed, sid, _seed_word(epoch), j)))
            after[s.name] = [epoch, index + n]
        return keys, after

    def advance(self, position: dict[str, list[int]], step: int = 0) -> dict[str, list[int]]:
        """The position one global batch (that of ``step``) later (no permutation needed)."""
        after = {}
        for sid, (s, n) in enumerate(zip(self.streams, self.shares(step))):
            epoch, index = self._next(sid, position[s.name], n)
            after[s.name] = [epoch, index + n]
        return after

    def _next(self, stream_id: int, at: list[int], n: int) -> tuple[int, int]:
        """Where the stream's next ``n`` samples start: ``at``, or the next epoch's start when too few are left."""
        epoch, index = at
        if n and index + n > self.epoch_size(stream_id, epoch):
            return epoch + 1, 0  # the head pass (-1) is followed by epoch 0
        if epoch == HEAD_PASS and index >= self.epoch_size(stream_id, epoch):
            return 0, 0  # a head pass read to its end moves on even in a batch the stream takes no part in
        return epoch, index


class PlanSampler(Sampler):
    """Endless batches of ``SampleKey`` for one rank, from ``start`` (the position of batch ``step``) on: rank r
    takes places r, r+W, ..."""

    def __init__(self, plan: BatchPlan, start: dict[str, list[int]], rank: int = 0, world_size: int = 1,
                 step: int = 0):
        self.plan, self.start, self.rank, self.world_size, self.step = plan, start, rank, world_size, step

    def __iter__(self) -> Iterator[list[SampleKey]]:
        position, step = self.start, self.step
        while True:
            keys, position = self.plan.next_batch(position, step)
            step += 1
            yield keys[self.rank::self.world_size]


class RecAug:
    """PaddleOCR's RecAug (TIA-like perspective, crop, blur, colour jitter, noise, inversion) with
    ``torchvision.transforms.v2``'s functional ops; each step applies with probability ``prob``.

    The parameters come from the sample's own numpy generator, not from torch's global one (seeding that
    per sample costs more than the ops), so a sample and epoch give the same pixels in any worker.
    """

    def __init__(self, prob: float = 0.4):
        self.prob = prob

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        from torchvision.transforms.v2 import functional as F

        p = self.prob
        w, h = img.size
        x = F.pil_to_tensor(img)
        if rng.random() < p and w >= 8 and h >= 8:
            d = 0.25 * h  # each corner moves in or out by up to a quarter of the height
            start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
            end = (np.asarray(start, np.float64) + rng.uniform(-d, d, (4, 2))).round().astype(int).tolist()
            fill = [float(v) for v in x.float().mean((1, 2))]
            x = F.perspective(x, start, end, fill=fill)
        if rng.random() < p and h >= 16:
            top, bottom = rng.integers(0, h // 8 + 1, 2).tolist()
            x = x[:, top:h - bottom]
        if rng.random() < p:
            x = F.gaussian_blur(x, [5, 5], [float(rng.uniform(0.5, 1.5))])
        if rng.random() < p:
            b, c, s = rng.uniform(0.6, 1.4, 3).tolist()
            x = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(x, b), c), s)
            x = x[torch.from_numpy(rng.permutation(3))]  # a colour shift: channels swapped
        if rng.random() < p:
            noise = torch.from_numpy(rng.normal(0, rng.uniform(2, 12), tuple(x.shape)).astype(np.float32))
            x = (x.float() + noise).clamp(0, 255).round().to(torch.uint8)
        if rng.random() < p / 2:
            x = F.invert(x)
        return F.to_pil_image(x)


class RecTrainSet(Dataset):
    """``key -> (image tensor (3, H, W), encoded label)`` over a dataset of ``(PIL image, label)``; RecAug on
    every sample (``augment`` True) or on the samples of the given index ranges (the augmented streams).

    An image to augment is first brought down to twice the model's height (keeping its ratio): RecAug's cost
    grows with the pixels (a real crop of a few hundred pixels costs ten times a small one), while the model
    only ever sees it at ``height``."""

    def __init__(self, base: Dataset, charset: Charset, height: int = 32, width: int = 100,
                 augment: bool | Sequence[range] = False):
        self.base, self.charset, self.height, self.width = base, charset, height, width
        self.augment = RecAug() if augment else None
        self.augmented = None if isinstance(augment, bool) else list(augment)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: SampleKey):
        index, seed = key
        img, label = self.base[index]
        if self.augment is not None and (self.augmented is None or any(index in r for r in self.augmented)):
            w, h = img.size
            if h > 2 * self.height:
                img = img.resize((max(1, round(w * 2 * self.height / h)), 2 * self.height), Image.Resampling.BILINEAR)
            img = self.augment(img, np.random.default_rng(seed))
        return resize_norm_img(img, self.height, self.width), self.charset.encode(label)


def collate_rec(batch: list[tuple[np.ndarray, list[int]]], max_text_length: int):
    """Images stacked; labels right-padded with 0 to ``max_text_length``, as PaddleOCR's CTCLabelEncode."""
    images = torch.from_numpy(np.stack([b[0] for b in batch]))
    targets = torch.zeros(len(batch), max_text_length, dtype=torch.long)
    lengths = torch.empty(len(batch), dtype=torch.long)
    for i, (_, label) in enumerate(batch):
        targets[i, : len(label)] = torch.as_tensor(label, dtype=torch.long)
        lengths[i] = len(label)
    return images, targets, lengths


class _Collate:
    """Picklable collate for spawned workers."""

    def __init__(self, max_text_length: int):
        self.max_text_length = max_text_length

    def __call__(self, batch):
        return collate_rec(batch, self.max_text_length)


def train_loader(dataset: RecTrainSet, sampler: PlanSampler, num_workers: int, pin_memory: bool = False) -> DataLoader:
    # Its own generator: starting the iterator must not draw from the global RNG that checkpoints restore.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=_Collate(dataset.charset.max_text_length), pin_memory=pin_memory,
                      prefetch_factor=4 if num_workers else None, generator=torch.Generator().manual_seed(0))
