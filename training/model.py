"""Backbone + new head: a torchvision model by name, its pretrained weights, and the frozen warm-up.

The model is built by :func:`inference.architecture.build_model` (the endpoint's builder) with the
dataset's number of classes, and the pretrained weights are copied in for every parameter except the
classification head. So the trained ``state_dict`` has exactly the names and shapes the endpoint
expects, for any torchvision classifier (ResNets' ``fc``, EfficientNets' ``classifier.1``, ViTs'
``heads.head``, Inception's auxiliary head as well) without a per-architecture table.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from inference.architecture import build_model

log = logging.getLogger(__name__)


def head_parameter_names(arch: str) -> frozenset[str]:
    """Names of the state_dict entries whose shape depends on the number of classes.

    Found by building the model twice on the meta device (no memory, no initialisation cost) with
    different class counts and comparing shapes.
    """
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # inception_v3's note about its init default
        a = build_model(arch, 2).state_dict()
        b = build_model(arch, 3).state_dict()
    return frozenset(name for name, tensor in a.items() if tensor.shape != b[name].shape)


def pretrained_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor] | None:
    """ImageNet weights: from torchvision's weights API (downloads), or a local file of the same."""
    if weights == "none":
        return None
    if weights == "imagenet":
        # The arch's DEFAULT weights (the best ImageNet-1K recipe torchvision ships).
        entry = models.get_model_weights(arch).DEFAULT
        log.info("loading %s weights %s", arch, entry)
        return entry.get_state_dict(progress=False, check_hash=True)
    state = torch.load(Path(weights), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a torchvision-references checkpoint
    return strip_prefixes(state)


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP's ``module.`` and ``torch.compile``'s ``_orig_mod.`` from parameter names."""
    out = {}
    for name, tensor in state.items():
        while name.startswith(("module.", "_orig_mod.")):
            name = name.split(".", 1)[1]
        out[name] = tensor
    return out


def create_model(arch: str, num_classes: int, weights: str) -> nn.Module:
    """``build_model(arch, num_classes)`` with the backbone initialised from ``weights``."""
    model = build_model(arch, num_classes)
    pretrained = pretrained_state_dict(arch, weights)
    if pretrained is None:
        return model
    head = head_parameter_names(arch)
    target = model.state_dict()
    backbone = {k: v for k, v in pretrained.items() if k not in head}
    missing = sorted(set(target) - head - set(backbone))
    unexpected = sorted(set(backbone) - set(target))
    mismatched = sorted(k for k in backbone if k in target and backbone[k].shape != target[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights {weights!r} do not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {mismatched[:5]}"
        )
    model.load_state_dict(backbone, strict=False)
    log.info("initialised %s from %s; new head: %s", arch, weights, ", ".join(sorted(head)))
    return model


def set_backbone_frozen(model: nn.Module, arch: str, frozen: bool) -> None:
    """Freeze (or unfreeze) everything but the head; frozen BatchNorm layers also stop updating statistics."""
    head_modules = {name.rsplit(".", 1)[0] for name in head_parameter_names(arch)}
    for name, param in model.named_parameters():
        param.requires_grad = not frozen or name.rsplit(".", 1)[0] in head_modules
    set_frozen_norm_eval(model, arch, frozen)


def set_frozen_norm_eval(model: nn.Module, arch: str, frozen: bool) -> None:
    """Call after ``model.train()``: keep a frozen backbone's normalisation layers in eval mode."""
    if not frozen:
        return
    head_modules = {name.rsplit(".", 1)[0] for name in head_parameter_names(arch)}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name not in head_modules:
            module.eval()
