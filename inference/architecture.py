"""Builds the network for a model config: the one place that knows how an arch name becomes a module."""

from __future__ import annotations

import torch
from torchvision import models


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    """An untrained torchvision classifier whose head has ``num_classes`` outputs.

    ``get_model(..., num_classes=K)`` gives the same parameter names as a pretrained backbone whose
    last ``Linear`` was swapped for a K-way one, so a fine-tuned ``state_dict`` loads into it.
    """
    if arch not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision classification model {arch!r}")
    return models.get_model(arch, weights=None, num_classes=num_classes)
