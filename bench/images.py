"""Test images that cost what real ones cost to decode: a 12-megapixel phone photo and a small web photo.

JPEG decoding time depends on the pixel count and on how much detail the entropy coder has to
carry, so a flat or pure-noise image would mislead. :func:`photo_jpeg` builds something
photographic: smooth low-frequency light and colour, mid-frequency variation, a few dozen
overlapping shapes with soft edges, and fine sensor-like noise, saved the way a phone saves it
(baseline JPEG, quality 90, 4:2:0 chroma subsampling). A 4032x3024 one is about 2-3 MB, in the
range of a 12 MP phone photo. Output is a pure function of the arguments.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PHONE_SIZE = (4032, 3024)  # 12 MP, 4:3: the default of most phone cameras
SMALL_SIZE = (640, 480)  # a photo a web page or a chat app would send


def _upsampled_field(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int], spread: float):
    """Random values on a coarse ``grid`` (h, w), bicubically upsampled to ``size`` (w, h): smooth "
    "variation."""
    coarse = np.clip(128 + rng.normal(0, spread, size=(*grid, 3)), 0, 255).astype(np.uint8)
    field = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    return np.asarray(field, dtype=np.int16) - 128


def photo_image(size: tuple[int, int] = PHONE_SIZE, seed: int = 0) -> Image.Image:
    """An RGB image of ``size`` (width, height) with photo-like structure at every scale."""
    width, height = size
    rng = np.random.default_rng(seed)
    light = _upsampled_field(rng, (4, 5), size, 60) + 128
    detail = _upsampled_field(rng, (max(2, height // 64), max(2, width // 64)), size, 30)
    image = Image.fromarray(np.clip(light + detail, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    scale = min(width, height)
    for _ in range(40):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        radius = int(rng.integers(scale // 60 + 1, scale // 4 + 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = [x - radius, y - radius // 2, x + radius, y + radius // 2]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1.0, scale / 1500)))
    noise = rng.standard_normal(size=(height, width, 3), dtype=np.float32) * 5
    pixels = np.asarray(image, dtype=np.float32) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def photo_jpeg(size: tuple[int, int] = PHONE_SIZE, seed: int = 0, quality: int = 90) -> bytes:
    """:func:`photo_image` as JPEG bytes, baseline, 4:2:0 subsampling, as a phone camera writes it."""
    buffer = io.BytesIO()
    photo_image(size, seed).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    return buffer.getvalue()
