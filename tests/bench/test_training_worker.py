"""bench.training_worker: the "data loader alone" rate times loading, not the workers' prefetch queue."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench import training_worker

DELAY = 0.02  # seconds to load one sample


class SlowDataset(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        time.sleep(DELAY)
        return torch.zeros(3), index % 2


def test_loader_alone_does_not_time_the_batches_the_workers_prefetched():
    dataset = SlowDataset()
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False)
    loader = DataLoader(
        dataset, batch_size=1, sampler=sampler, num_workers=1, prefetch_factor=4, persistent_workers=True
    )
    assert training_worker.prefetched(loader) == 4
    batches = training_worker._batches(loader, sampler)
    training_worker.take(batches, 1)  # workers started
    time.sleep(10 * DELAY)  # as the training steps between two loader calls do: the queue fills up
    images, seconds = training_worker.loader_alone(batches, 3, training_worker.prefetched(loader))
    assert images == 3
    # Three samples loaded on the clock; reading three prefetched ones would take about nothing.
    assert seconds >= 3 * DELAY * 0.9


def test_without_workers_nothing_is_prefetched():
    loader = DataLoader(SlowDataset(), batch_size=1, num_workers=0)
    assert training_worker.prefetched(loader) == 0
