"""Datasets, class names, the training preset and the samplers that shard data across ranks.

Evaluation uses the endpoint's own preset and decode rule (:mod:`inference.preprocessing`), so a
validation accuracy is the accuracy the endpoint will have on the same images.

The loaders send uint8 pixels; :func:`to_model_input` makes them float model input on the device. A
uint8 batch is a quarter of float32's bytes through the workers' shared memory, the pinned buffer and
the copy to the GPU, and the float work moves off the CPU cores that bound how fast a GPU is fed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision import datasets
from torchvision.transforms import v2

from inference.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizeImages,
    decode_training_image,
    eval_transform_uint8,
    resize_size_for,
)

from .config import TrainConfig
from .distributed import DistContext

_FOLDER = re.compile(r"^\d+\.(?P<name>.+)$")
log = logging.getLogger(__name__)
_NORMALIZE = NormalizeImages(IMAGENET_MEAN, IMAGENET_STD)


def class_name_from_folder(folder: str) -> str:
    """``096.Labrador_retriever`` -> ``Labrador retriever``: the one rule from folder to breed name.

    The numeric prefix (dogImages numbers its 133 breeds) only fixes the order; a folder without one is
    used as is, with underscores read as spaces.
    """
    match = _FOLDER.match(folder)
    name = match.group("name") if match else folder
    name = " ".join(name.replace("_", " ").split())
    if not name:
        raise ValueError(f"class folder {folder!r} has no name")
    return name


def load_training_image(path: str) -> Image.Image:
    """The endpoint's decode rule for a dataset file (:func:`inference.preprocessing.decode_training_image`:
    EXIF orientation applied, RGB), and a truncated file decodes instead of failing.

    torchvision's default ImageFolder loader (``datasets.folder.pil_loader``) ignores EXIF orientation, so
    a photo stored sideways trained and validated sideways while the endpoint turned it upright.

    dogImages has one truncated JPEG (``train/098.Leonberger/Leonberger_06571.jpg``), and Pillow's
    default "image file is truncated" ended every full-dataset run in its first epoch. Losing the bottom
    rows of one photo costs nothing; losing the run costs everything.

    The tolerance is ``ImageFile.LOAD_TRUNCATED_IMAGES``, a process-wide switch that Pillow reads while
    decoding. It is on only around the retry of a file that failed strictly, and off again after: set at
    import, it would also reach :func:`inference.preprocessing.decode_image` in any process that imports
    this module (the test suite, the demo), and the endpoint must keep answering 400 to truncated
    uploads. The loader runs wherever the DataLoader loads (its worker processes, or the main process
    with ``--workers 0``); neither decodes endpoint requests on another thread meanwhile.
    """
    try:
        return decode_training_image(path)
    except OSError as exc:
        strict_error = exc
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        image = decode_training_image(path)  # a missing or unreadable file still raises here
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    log.warning("%s: %s; training on the part that decodes", path, strict_error)
    return image


def train_transform(image_size: int, min_crop_scale: float) -> v2.Compose:
    """torchvision's ``ClassificationPresetTrain`` without the extras: random crop, flip; uint8 CHW out.

    The crop and its resize run on the uint8 tensor (torch's antialiased bilinear kernel), not on the
    PIL image: faster per core (``make bench``, "Training input pipeline"), and within 1/255 of
    Pillow's resize. ``v2`` draws the same random numbers in the same order as the v1 transforms did,
    so a seed gives the same crops and flips. Normalization follows on the device
    (:func:`to_model_input`).
    """
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(image_size, scale=(min_crop_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def to_model_input(
    images: torch.Tensor, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """A loader's batch as the model takes it: on ``device``, float32, normalized, in ``memory_format``.

    uint8 batches (what this module's loaders send) are copied as uint8 and normalized where they
    arrive. A float batch is model input already (any other loader's, the loop tests'): it is only
    moved.
    """
    if images.dtype != torch.uint8:
        return images.to(device, non_blocking=True, memory_format=memory_format)
    return _NORMALIZE(images.to(device, non_blocking=True), memory_format)


class SeededAugmentation(Dataset):
    """Applies a random transform whose randomness is a function of (seed, epoch, sample index).

    With this, a sample looks the same whichever rank, worker or restart loads it, which is what makes
    a resumed run reproduce an uninterrupted one batch for batch. ``fork_rng`` keeps the caller's global
    RNG untouched when loading in the main process (``--workers 0``), the CUDA generators included.

    The key is an index (the epoch is the one last given to :meth:`set_epoch`) or an ``(epoch, index)``
    pair from :class:`EpochIndexSampler`. The training loader uses the pairs: its persistent worker
    processes hold copies of this object made in the first epoch, which never see a later
    ``set_epoch`` in the main process, so with plain indices every epoch would repeat epoch 0's crops.
    """

    def __init__(self, base: datasets.ImageFolder, transform: Callable[[Any], Any], seed: int) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        image, target = self.base[index]
        seed = (self.seed * 1_000_003 + epoch) * 10_000_019 + index
        # Only the CPU generator, the one torchvision's transforms draw from: fork_rng(devices=[]) saves
        # and restores that one alone ("CPU RNG state is always forked",
        # https://docs.pytorch.org/docs/stable/random.html), while torch.manual_seed would also reseed every
        # CUDA generator, unrestored, so with --workers 0 on a GPU each image would reset the CUDA RNG.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed % (2**63))
            return self.transform(image), target


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``n`` gets indices ``r, r+n, r+2n, ...``: disjoint, together exactly the dataset.

    Unlike ``DistributedSampler`` it neither pads (which counts some samples twice) nor drops, so metrics
    summed over ranks are over every sample exactly once.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = shard_indices(length, rank, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def shard_indices(length: int, rank: int, world_size: int) -> list[int]:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return list(range(rank, length, world_size))


class ResumableSampler(Sampler[int]):
    """A rank's shuffled training shard for one epoch, optionally skipping the batches already trained.

    Wraps ``DistributedSampler(drop_last=True)``: the shards of one epoch are disjoint and equally long
    (DDP needs every rank to run the same number of steps), and the order depends only on seed and epoch.
    """

    def __init__(self, length: int, ctx: DistContext, seed: int) -> None:
        self.inner = DistributedSampler(
            range(length),
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=seed,
            drop_last=ctx.world_size > 1,
        )
        self.skip = 0
        self.epoch = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.epoch = epoch
        self.skip = skip_samples

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip :])

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class EpochIndexSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` keys for :class:`SeededAugmentation`: the epoch travels with every index.

    The sampler is iterated in the main process, so the keys carry the current epoch to DataLoader
    workers however long they live (``persistent_workers``).
    """

    def __init__(self, inner: ResumableSampler) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.inner.epoch
        return ((epoch, index) for index in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


@dataclass
class Data:
    class_names: tuple[str, ...]
    train: SeededAugmentation
    train_sampler: ResumableSampler
    valid: datasets.ImageFolder
    test: datasets.ImageFolder | None

    def train_loader(self, cfg: TrainConfig) -> DataLoader:
        """The training set in ``train_sampler``'s order, augmented for ``train_sampler``'s epoch."""
        return self.loader(self.train, EpochIndexSampler(self.train_sampler), cfg)

    def loader(self, dataset: Dataset, sampler: Sampler, cfg: TrainConfig) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=torch.cuda.is_available(),
            # Workers stay up between epochs instead of re-forking (and re-importing) every epoch.
            persistent_workers=cfg.workers > 0,
            drop_last=False,
            prefetch_factor=4 if cfg.workers > 0 else None,
        )


def load_data(cfg: TrainConfig, ctx: DistContext) -> Data:
    root = Path(cfg.data_dir)
    evaluation = eval_transform_uint8(cfg.image_size, resize_size_for(cfg.image_size))
    # Every split decodes leniently: one damaged file must not end a run, in validation neither.
    train_base = datasets.ImageFolder(root / "train", loader=load_training_image)
    valid = datasets.ImageFolder(root / "valid", transform=evaluation, loader=load_training_image)
    test = (
        datasets.ImageFolder(root / "test", transform=evaluation, loader=load_training_image)
        if (root / "test").is_dir()
        else None
    )
    for split in (valid, test):
        if split is not None and split.classes != train_base.classes:
            raise ValueError(f"{split.root} has different class folders than {train_base.root}")
    names = tuple(class_name_from_folder(folder) for folder in train_base.classes)
    if len(set(names)) != len(names):
        raise ValueError("two class folders map to the same class name")
    train = SeededAugmentation(train_base, train_transform(cfg.image_size, cfg.min_crop_scale), cfg.seed)
    return Data(names, train, ResumableSampler(len(train), ctx, cfg.seed), valid, test)
