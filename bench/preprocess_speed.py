"""From JPEG bytes to the model's input tensor: full decode vs JPEG draft (DCT-scaled) decode.

Both paths call the endpoint's own code, :func:`inference.preprocessing.decode_image` and
:func:`inference.preprocessing.eval_transform`: the naive path decodes every pixel
(``min_side=None``) and lets the preset's resize throw most of them away; the draft path asks
libjpeg to decode at 1/2, 1/4 or 1/8 scale while the shorter side stays at least the preset's
resize size (``min_side=resize_size``, what ``input_fn`` does), so the resize that follows sees
enough pixels to give nearly the same tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from inference.preprocessing import decode_image, eval_transform, resize_size_for

from .images import PHONE_SIZE, SMALL_SIZE, photo_jpeg
from .timing import Stats, interleaved, ratio_stats

IMAGE_SIZE = 224


def to_tensor(data: bytes, draft: bool, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """The model input for ``data``: full or draft decode, then the evaluation preset."""
    resize = resize_size_for(image_size)
    image = decode_image(data, min_side=resize if draft else None)
    return eval_transform(image_size, resize)(image)


def tensor_difference(data: bytes, image_size: int = IMAGE_SIZE) -> dict[str, float]:
    """How far the draft tensor is from the full-decode one (normalized units: 1.0 ~ 0.23 of [0, 1])."""
    full, draft = to_tensor(data, False, image_size), to_tensor(data, True, image_size)
    diff = (full - draft).abs()
    return {
        "mean_abs": diff.mean().item(),
        "max_abs": diff.max().item(),
        "p99_abs": diff.quantile(0.99).item(),
    }


def run(
    repeats: int = 10,
    phone_size: tuple[int, int] = PHONE_SIZE,
    small_size: tuple[int, int] = SMALL_SIZE,
    images: dict[str, bytes] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    images = images or {"phone": photo_jpeg(phone_size), "small": photo_jpeg(small_size, seed=1)}
    resize = resize_size_for(IMAGE_SIZE)
    transform = eval_transform(IMAGE_SIZE, resize)
    variants: dict[str, Callable[[], object]] = {}
    for name, data in images.items():
        variants[f"{name}/full decode"] = lambda data=data: decode_image(data)
        variants[f"{name}/draft decode"] = lambda data=data: decode_image(data, min_side=resize)
        variants[f"{name}/full decode + preset"] = lambda data=data: transform(decode_image(data))
        variants[f"{name}/draft decode + preset"] = lambda data=data: transform(
            decode_image(data, min_side=resize)
        )
    samples = interleaved(variants, repeats=repeats, warmup=1)
    out: dict[str, Any] = {"repeats": repeats, "resize_size": resize, "image_size": IMAGE_SIZE, "images": {}}
    for name, data in images.items():
        with_size = decode_image(data)
        drafted = decode_image(data, min_side=resize)
        entry: dict[str, Any] = {
            "bytes": len(data),
            "pixels": f"{with_size.width}x{with_size.height}",
            "draft_decoded_pixels": f"{drafted.width}x{drafted.height}",
            "ms": {},
            "tensor_difference": tensor_difference(data),
        }
        for label in ("full decode", "draft decode", "full decode + preset", "draft decode + preset"):
            entry["ms"][label] = Stats.of(samples[f"{name}/{label}"]).scaled(1000).as_dict()
        entry["speedup_draft_vs_full"] = ratio_stats(
            samples[f"{name}/full decode + preset"], samples[f"{name}/draft decode + preset"]
        ).as_dict()
        out["images"][name] = entry
        log(
            f"  {name} {entry['pixels']}: full {entry['ms']['full decode + preset']['median']:.1f} ms,"
            f" draft {entry['ms']['draft decode + preset']['median']:.1f} ms"
        )
    if "phone" in images and "small" in images:
        out["phone_draft_vs_small_full"] = ratio_stats(
            samples["phone/draft decode + preset"], samples["small/full decode + preset"]
        ).as_dict()
    return out
