"""Image decoding and the evaluation preset: the single definition of what the model sees.

Training's validation loop and the endpoint both call :func:`eval_transform`, and the endpoint
decodes request bytes with :func:`decode_image`, so a served prediction matches a validation one.
"""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's reference recipes resize to image_size / 0.875 before the centre crop (224 -> 256).
CROP_RATIO = 0.875
# 40 MP covers every phone camera (a 48 MP sensor bins to 12 MP by default) and bounds the memory a
# single request may make the worker allocate: 40e6 px x 3 bytes = 120 MB decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow reports a JPEG with a Multi-Picture (MPF) segment, which many phone cameras write, as
# "MPO"; its first frame is an ordinary baseline JPEG, so it is accepted as one.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
# Encoders write at most ~10 scans (libjpeg's progressive script has 10, mozjpeg's fewer), yet every
# scan costs a full pass over the image's coefficients: a few hundred KB repeating one scan thousands
# of times holds a worker for seconds. libjpeg-turbo's own guidance for untrusted input is a scan
# limit; Pillow exposes none, so start-of-scan markers are counted before decoding. 0xFF in
# entropy-coded data is always stuffed (FF 00), so FF DA only appears as a marker or inside a
# metadata segment, where a rare stray one costs nothing against this margin. (A compiled pattern
# searches ~3x faster than bytes.count here: 0.2 ms for a 650 KB photo.)
MAX_JPEG_SCANS = 100
_JPEG_START_OF_SCAN = re.compile(b"\xff\xda")


class ImageDecodeError(ValueError):
    """The bytes are not an image the endpoint accepts; the message is safe to show the caller."""

    status_code = 400


class UnsupportedImageFormat(ImageDecodeError):
    status_code = 415


class ImageTooLarge(ImageDecodeError):
    status_code = 413


def resize_size_for(image_size: int) -> int:
    return round(image_size / CROP_RATIO)


def eval_transform(
    image_size: int,
    resize_size: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> transforms.Compose:
    """Resize the short side, centre-crop, scale to [0, 1], normalize: a PIL RGB image in, CHW float out."""
    return transforms.Compose(
        [
            transforms.Resize(resize_size or resize_size_for(image_size), antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode JPEG/PNG/WebP bytes into an upright 8-bit RGB image, or raise :class:`ImageDecodeError`.

    ``min_side`` lets a JPEG decode at a DCT-scaled size (1/2, 1/4, 1/8) whose shorter side is still
    at least ``min_side`` pixels: a 12 MP photo then costs about as much as a small one, and the
    following resize to ``min_side`` sees enough pixels that the result matches a full decode.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("the body is not a JPEG, PNG or WebP image") from None
    except Image.DecompressionBombError:
        # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS) fires in open() for headers far above
        # max_pixels; it is the same answer as ours below, not a server error.
        raise ImageTooLarge(f"the image has more pixels than the limit of {max_pixels}") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Malformed headers surface as OSError, SyntaxError ("broken PNG file"), struct.error,
        # ValueError, EOFError ... depending on the plugin: all mean the caller sent a bad file.
        raise ImageDecodeError(f"the image header cannot be read: {_short(exc)}") from None
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormat(f"image format {image.format} is not supported; send JPEG, PNG or WebP")
    width, height = image.size
    # Checked on the header, before any pixel is decoded: the defence against decompression bombs.
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image has {width}x{height} pixels; the limit is {max_pixels} pixels")
    if width < 1 or height < 1:
        raise ImageDecodeError("the image has no pixels")
    is_jpeg = image.format in ("JPEG", "MPO")
    if is_jpeg and _more_scans_than_allowed(data):
        raise ImageDecodeError(
            f"the JPEG has more than {MAX_JPEG_SCANS} scans; re-encode it as a normal JPEG"
        )
    if min_side and is_jpeg:
        image.draft("RGB", (min_side, min_side))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow says "image file is truncated" (OSError) or "broken data stream" for damaged files;
        # other plugins raise SyntaxError, struct.error, IndexError ... for the same cause.
        raise ImageDecodeError(f"the image data is damaged or truncated: {_short(exc)}") from None


def _more_scans_than_allowed(data: bytes) -> bool:
    # Stops at the first marker over the limit: a body made of nothing but FF DA pairs must not
    # make a list of two million matches.
    return next(itertools.islice(_JPEG_START_OF_SCAN.finditer(data), MAX_JPEG_SCANS, None), None) is not None


def _short(exc: Exception) -> str:
    """The exception text, bounded: it goes back to the caller inside an error message."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: Pillow's convert() clips instead of scaling, so scale to 8 bits by hand.
        pixels = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))  # 2-D uint8: mode "L"
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a browser shows them, rather than arbitrary colours.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def image_to_tensor(image: Image.Image, transform: transforms.Compose) -> torch.Tensor:
    return transform(image)
