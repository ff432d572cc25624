"""Builds the network for a model config: the one place that knows how an arch name becomes a module."""

from __future__ import annotations

import torch
from torchvision import models

# torchvision's classifiers with auxiliary heads, which they add only in training mode, and the
# top-level modules those heads are. They are built without them (see build_model).
AUX_HEADS: dict[str, tuple[str, ...]] = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    """An untrained torchvision classifier whose head has ``num_classes`` outputs.

    ``get_model(..., num_classes=K)`` gives the same parameter names as a pretrained backbone whose
    last ``Linear`` was swapped for a K-way one, so a fine-tuned ``state_dict`` loads into it.

    GoogLeNet and Inception v3 come without their auxiliary heads (``aux_logits=False``, as
    torchvision's builders do after loading ImageNet weights when asked): with them, a training-mode
    forward returns (logits, aux...), and under DDP parameters that never get a gradient stop the
    second step. The endpoint runs in eval mode, where the heads are unused anyway.
    """
    if arch not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision classification model {arch!r}")
    extra = {"aux_logits": False} if arch in AUX_HEADS else {}
    return models.get_model(arch, weights=None, num_classes=num_classes, **extra)
