"""Backbone + new head: a torchvision model by name, its pretrained weights, and the frozen warm-up.

The model is built by :func:`inference.architecture.build_model` (the endpoint's builder) with the
dataset's number of classes, and the pretrained weights are copied in for every parameter except the
classification head. So the trained ``state_dict`` has exactly the names and shapes the endpoint
expects, for any torchvision classifier (ResNets' ``fc``, EfficientNets' ``classifier.1``, ViTs'
``heads.head``) without a per-architecture table. The one exception is the auxiliary heads of
GoogLeNet and Inception v3 (``inference.architecture.AUX_HEADS``): their ImageNet weights have them, the
model does not, and they are left out.
"""

from __future__ import annotations

import argparse
import functools
import logging
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from inference.architecture import AUX_HEADS, build_model

log = logging.getLogger(__name__)

# The size every torchvision classifier is built for (ViTs take nothing else, MaxViT 221-224 only).
REFERENCE_IMAGE_SIZE = 224


def _build_on_meta(arch: str, num_classes: int) -> nn.Module:
    """The model with shapes but no storage or initialisation cost; raises for the RegNets, whose
    builders compute stage widths with tensors and ``.tolist()``, which meta tensors cannot do."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception_v3's note on their init
        return build_model(arch, num_classes)


@functools.cache
def head_parameter_names(arch: str) -> frozenset[str]:
    """Names of the state_dict entries whose shape depends on the number of classes.

    Found by building the model twice with different class counts and comparing shapes: on the meta
    device, or where that fails (RegNets) on the CPU, which for the largest costs seconds and a few GB
    once. Cached: the frozen warm-up asks every epoch.
    """

    def shapes(model: nn.Module) -> dict[str, torch.Size]:
        return {name: tensor.shape for name, tensor in model.state_dict().items()}

    try:
        a, b = (shapes(_build_on_meta(arch, n)) for n in (2, 3))
    except (NotImplementedError, RuntimeError) as exc:
        log.info("%s does not build on the meta device (%s); comparing two CPU builds", arch, exc)
        with torch.device("cpu"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            a, b = (shapes(build_model(arch, n)) for n in (2, 3))  # one at a time in memory
    return frozenset(name for name, shape in a.items() if shape != b[name])


def image_size_error(arch: str, image_size: int) -> str | None:
    """Why ``arch`` cannot take ``image_size`` px images, or None when it can or this cannot tell.

    A forward pass on the meta device (shapes only, well under a second): ViTs and MaxViT accept only
    (about) the size they were built for, and deep CNNs pool small images down to nothing; either would
    otherwise fail on the first batch. Not told: the RegNets (they do not build on meta) and any model
    whose meta forward fails at the reference size too (an operator without a meta kernel).
    """
    try:
        model = _build_on_meta(arch, 2).eval()
        _meta_forward(model, REFERENCE_IMAGE_SIZE)
    except Exception:  # best effort: where this cannot tell, the first batch still will
        return None
    try:
        _meta_forward(model, image_size)
    except Exception as exc:  # whatever fails at this size alone is the answer
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return reason if len(reason) <= 160 else reason[:157] + "..."
    return None


def _meta_forward(model: nn.Module, image_size: int) -> None:
    with torch.device("meta"), torch.no_grad():
        model(torch.empty(1, 3, image_size, image_size))


def pretrained_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor] | None:
    """ImageNet weights: from torchvision's weights API (downloads), or a local file of the same."""
    if weights == "none":
        return None
    if weights == "imagenet":
        # The arch's DEFAULT weights (the best ImageNet-1K recipe torchvision ships).
        entry = models.get_model_weights(arch).DEFAULT
        log.info("loading %s weights %s", arch, entry)
        return entry.get_state_dict(progress=False, check_hash=True)
    # torchvision's references/classification/train.py saves {"model", "optimizer", "lr_scheduler",
    # "epoch", "args"[, "model_ema"]} with ``args`` its argparse.Namespace
    # (https://github.com/pytorch/vision/blob/main/references/classification/train.py): the one class
    # such a file needs beyond what weights_only loads. It is allowed for this load only, with the
    # context manager that torch's refusal names (torch.serialization.safe_globals; weights_only in
    # https://docs.pytorch.org/docs/stable/generated/torch.load.html); any other class is still refused.
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(Path(weights), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a torchvision-references checkpoint (not its "model_ema")
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
    aux = tuple(f"{module}." for module in AUX_HEADS.get(arch, ()))
    backbone = {k: v for k, v in pretrained.items() if k not in head and not k.startswith(aux)}
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
