"""Image decoding and the evaluation preset: the single definition of what the model sees.

Training's validation loop and the endpoint share the evaluation preset (:func:`eval_transform_uint8`
and :class:`NormalizeImages`, which :func:`eval_transform` chains for the endpoint; training runs the
second on the GPU) and the decode rule: the endpoint decodes request bytes with :func:`decode_image`,
training its dataset files with :func:`decode_training_image`, the same orientation and conversion
to RGB without the hostile-input limits. So a served prediction matches a validation one.

Every body under the endpoint's size limit must cost a bounded amount of CPU and memory: the limits
below are checked on headers and metadata before Pillow or libjpeg do the expensive part
(docs/serving.md, "Hostile inputs"; tests/serving/test_hostile_inputs.py measures the bounds).
"""

from __future__ import annotations

import io
import itertools
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, JpegImagePlugin, UnidentifiedImageError
from torchvision import transforms
from torchvision.transforms import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's reference recipes resize to image_size / 0.875 before the centre crop (224 -> 256).
CROP_RATIO = 0.875
# The header limit: 40 MP covers every phone camera (a 48 MP sensor bins to 12 MP by default). What a
# decode may allocate is bounded separately, by MAX_DECODE_BYTES: a JPEG this large decodes at 1/8
# scale (draft mode), a PNG or WebP would not.
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow reports a JPEG with a Multi-Picture (MPF) segment, which many phone cameras write, as
# "MPO"; its first frame is an ordinary baseline JPEG, so it is accepted as one.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
# Only these plugins may parse a body: Pillow would otherwise try every format it knows, and some
# (TIFF: a 65,535-entry directory with a warning per entry) cost seconds in Image.open before the
# format check could refuse them. The JPEG plugin opens MPO files too.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP")
# Encoders write at most ~10 scans (libjpeg's progressive script has 10, mozjpeg's fewer), yet every
# scan costs a full pass over the image's coefficients: a few hundred KB repeating one scan thousands
# of times holds a worker for seconds. libjpeg-turbo's own guidance for untrusted input is a scan
# limit; Pillow exposes none, so start-of-scan markers are counted before decoding. 0xFF in
# entropy-coded data is always stuffed (FF 00), so FF DA only appears as a marker or inside a
# metadata segment, where a rare stray one costs nothing against this margin. (A compiled pattern
# searches ~3x faster than bytes.count here: 0.2 ms for a 650 KB photo.)
MAX_JPEG_SCANS = 100
_JPEG_START_OF_SCAN = re.compile(b"\xff\xda")
# Pillow parses every marker segment before the first scan in Python, one at a time (and
# concatenates Exif segments, each copy longer than the last): 2.4 MB of 12-byte APP1 segments took
# 2 CPU-seconds. A phone writes about a dozen (APP0 JFIF, APP1 Exif, APP1 XMP, APP2 ICC and MPF,
# quantization and Huffman tables); the largest legitimate counts come from ICC profiles and extended
# XMP split into 64 KB chunks, a few dozen. Counted before Pillow sees the body, the way scans are.
MAX_JPEG_SEGMENTS = 256
# Fill bytes (FF FF ...), junk and length-less markers (RSTn, SOI, EOI) between those segments: Pillow
# steps over each in its own loop iteration (4 MB of fill: 2.5 CPU-s). Encoders write none; 64 KB of
# them is under 50 ms.
MAX_JPEG_STRAY_BYTES = 65_536
# Pillow parses the first EXIF directory (IFD0) when it opens a JPEG, one Python loop iteration and,
# for a malformed entry, one logged warning per entry: 65,000 entries took 1.3 CPU-s and logged 65,000
# warnings. Cameras write 10-20 entries there (the rest lives in sub-directories nobody parses here).
MAX_EXIF_ENTRIES = 256
# What one decode may allocate: the decoded image, one image-sized copy (the EXIF transpose, or the
# conversion to RGB), their row tables and the decoder's buffers. A 12 MP photo at the phone's
# 4032 x 3024 needs 98 MB of that with the copy (Pillow holds RGB at 4 bytes a pixel), twice what a
# 12 MP PNG needs without one; the bound is 2x a 12 MP photo's peak. JPEGs decode at 1/2 ..
# 1/8 scale when they are large, so only strips too narrow to scale and progressive JPEGs come near
# it. PNG and WebP decode at full size: an RGB or RGBA PNG may have ~12.5 MP, a greyscale one ~20 MP,
# a WebP (libwebp keeps two canvases besides Pillow's image) ~6.2 MP. Without this bound a 40 MP PNG
# of one colour, 130 KB, held 320 MB (RGBA: 800 MB; WebP: 640 MB).
MAX_DECODE_BYTES = 100_000_000
# Pillow's bytes per pixel in memory, by mode; every other mode we decode takes 4 (RGB is padded).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# libwebp's animation decoder, which Pillow uses for every WebP, keeps its canvas and the previous
# frame's (4 bytes a pixel each) for as long as the image is open.
_WEBP_DECODER_BYTES_PER_PIXEL = 8
# An image more elongated than this is centre-cropped along its long side before the preset resizes
# it (see CropToAspectRatio).
MAX_ASPECT_RATIO = 16
# Conversions to RGB run over bands of about this many bytes, so a conversion's temporaries never add
# up to another copy of the image.
_BAND_BYTES = 1 << 18

# EXIF orientation (tag 0x0112) -> the transpose that shows the image upright: ImageOps.exif_transpose's
# table, applied here without its rewrite of the EXIF block (seconds for a large one).
EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TRANSPOSE: dict[object, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_XMP_ORIENTATION = r'tiff:Orientation(="|>)([0-9])'


class ImageDecodeError(ValueError):
    """The bytes are not an image the endpoint accepts; the message is safe to show the caller."""

    status_code = 400


class UnsupportedImageFormat(ImageDecodeError):
    status_code = 415


class ImageTooLarge(ImageDecodeError):
    status_code = 413


def resize_size_for(image_size: int) -> int:
    return round(image_size / CROP_RATIO)


_Img = TypeVar("_Img", Image.Image, torch.Tensor)


class CropToAspectRatio:
    """Centre-crop the long side to at most ``max_ratio`` times the short side; other images pass as they are.

    The preset scales the short side up or down to the resize size before its centre crop, so a
    1 x 60,000 strip became a 256 x 15,360,000 image (~16 GB) to keep 224 x 224 of it, and a
    40,000,000 x 1 one overflowed Pillow. Cropping first keeps what the centre crop keeps and
    bounds the resize. It is part of :func:`eval_transform` rather than the endpoint's decoding so
    that training's validation and serving stay one preset; every image up to ``max_ratio``:1
    (panoramas included) comes out bit-identical to a plain Resize + CenterCrop. The window keeps the
    parity of the long side, so its centre is the image's centre exactly.
    """

    def __init__(self, max_ratio: int = MAX_ASPECT_RATIO) -> None:
        self.max_ratio = max_ratio

    def __call__(self, image: _Img) -> _Img:
        _, height, width = F.get_dimensions(image)
        short, long = min(width, height), max(width, height)
        if long <= short * self.max_ratio:
            return image
        window = short * self.max_ratio
        window += (long - window) % 2
        offset = (long - window) // 2
        if height > width:
            return F.crop(image, offset, 0, window, width)
        return F.crop(image, 0, offset, height, window)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_ratio={self.max_ratio})"


class NormalizeImages:
    """uint8 images (CHW, or an NCHW batch) to float32 model input: scaled to [0, 1], then (x - mean) / std.

    torchvision's ToTensor + Normalize, as one step that runs wherever the pixels are: the endpoint
    runs it per image inside :func:`eval_transform`, training on the GPU after copying a uint8 batch
    there (a quarter of float32's bytes, and the float work leaves the CPU workers). The operations
    are ToTensor's and Normalize's in their order, so on a CPU the result is bit-identical to them.
    """

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)
        # Built once per device: a tensor made from Python numbers on a GPU is a blocking host-to-device
        # copy, which per batch would stall the queue of GPU work.
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, images: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
    ) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"NormalizeImages takes uint8 images, got {images.dtype}")
        if images.device not in self._constants:
            self._constants[images.device] = tuple(
                torch.tensor(values, device=images.device).view(-1, 1, 1) for values in (self.mean, self.std)
            )
        mean, std = self._constants[images.device]
        return images.to(torch.float32, memory_format=memory_format).div_(255).sub_(mean).div_(std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def eval_transform_uint8(image_size: int, resize_size: int | None = None) -> transforms.Compose:
    """The evaluation preset up to the pixels: resize the short side, centre-crop; a PIL RGB image in,
    CHW uint8 out. Training's validation loader sends this and normalizes on the device."""
    return transforms.Compose(
        [
            CropToAspectRatio(),
            transforms.Resize(resize_size or resize_size_for(image_size), antialias=True),
            transforms.CenterCrop(image_size),
            transforms.PILToTensor(),
        ]
    )


def eval_transform(
    image_size: int,
    resize_size: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> transforms.Compose:
    """:func:`eval_transform_uint8`, then :class:`NormalizeImages`: a PIL RGB image in, CHW float out."""
    return transforms.Compose(
        [*eval_transform_uint8(image_size, resize_size).transforms, NormalizeImages(mean, std)]
    )


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode JPEG/PNG/WebP bytes into an upright 8-bit RGB image, or raise :class:`ImageDecodeError`.

    ``min_side`` lets a JPEG decode at a DCT-scaled size (1/2, 1/4, 1/8) whose shorter side is still
    at least ``min_side`` pixels: a 12 MP photo then costs about as much as a small one, and the
    following resize to ``min_side`` sees enough pixels that the result matches a full decode.
    """
    jpeg = _read_jpeg_header(data) if data[:3] == b"\xff\xd8\xff" else None
    try:
        image = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed is not None and claimed not in SUPPORTED_FORMATS:
            raise UnsupportedImageFormat(
                f"image format {claimed} is not supported; send JPEG, PNG or WebP"
            ) from None
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
    _check_decode_memory(image, jpeg)
    try:
        image.load()
        # Inline, not through a helper: rebinding ``image`` frees the decoded copy before the RGB
        # conversion; a helper's caller would keep it alive (three full-size copies at once for a
        # rotated RGBA PNG, tests/serving/test_hostile_inputs.py).
        method = _transpose_method(image)
        if method is not None:
            image = image.transpose(method)
        return _to_rgb(image)
    except (MemoryError, ImageDecodeError):
        raise
    except Exception as exc:
        # Pillow says "image file is truncated" (OSError) or "broken data stream" for damaged files;
        # other plugins raise SyntaxError, struct.error, IndexError ... for the same cause.
        raise ImageDecodeError(f"the image data is damaged or truncated: {_short(exc)}") from None


def decode_training_image(path: str | os.PathLike[str]) -> Image.Image:
    """A dataset file as :func:`decode_image` would give it, upright and 8-bit RGB, without its limits.

    Training and validation apply the endpoint's EXIF orientation and RGB conversion, so validation
    sees what the endpoint sees (a phone photo stored sideways is upright for both). The hostile-input
    bounds are not applied: a dataset's files are its owner's, and an odd but valid one (TIFF, GIF, a
    progressive JPEG over the decode-memory bound, an EXIF block of a thousand entries) is an image to
    train on. Pillow's own decompression-bomb limit still applies. A truncated file raises OSError,
    as Pillow does; the training loader decides what to do with it.
    """
    with open(path, "rb") as file:
        image = Image.open(file)
        image.load()
    # As decode_image: transposed before the conversion to RGB, as ImageOps.exif_transpose did it (the
    # same pixels, and the copy is of the decoded mode), rebinding so the decoded copy is freed.
    method = _transpose_method(image, max_exif_entries=None)
    if method is not None:
        image = image.transpose(method)
    return _to_rgb(image)


def _claimed_format(data: bytes) -> str | None:
    """The format whose signature the body starts with, by Pillow's own checks, without parsing it."""
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        _, accept = Image.OPEN[name]
        try:
            claimed = accept is not None and accept(prefix)
        except Exception:  # noqa: S112 - a signature check that fails means "not this format"
            continue
        if claimed and not isinstance(claimed, str):  # a str is Pillow's "looks like it, but" warning
            return name
    return None


def _more_scans_than_allowed(data: bytes) -> bool:
    # Stops at the first marker over the limit: a body made of nothing but FF DA pairs must not
    # make a list of two million matches.
    return next(itertools.islice(_JPEG_START_OF_SCAN.finditer(data), MAX_JPEG_SCANS, None), None) is not None


@dataclass(frozen=True)
class _JpegHeader:
    """What the marker segments before the first scan say about the cost of decoding."""

    exif: bytes | None
    # libjpeg's whole-image coefficient buffer (2 bytes per coefficient, at full resolution whatever
    # the DCT scaling): allocated for progressive and other multi-scan JPEGs, 0 otherwise.
    coefficient_bytes: int


_PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; C4/C8/CC are DHT/JPG/DAC


def _read_jpeg_header(data: bytes) -> _JpegHeader:
    """Walk the segments before the first scan as Pillow's JPEG parser will, and bound its work.

    The walk follows JpegImagePlugin's loop step for step (fill bytes, junk, markers with and without a
    length, in its own MARKER table), so what is counted here is what Pillow would iterate over.
    Anything that loop would refuse ends the walk, and Pillow's error is the answer.
    """
    markers = JpegImagePlugin.MARKER
    end = len(data)
    pos = 2
    segments = stray = 0
    exif_parts: list[bytes] = []
    frame: bytes | None = None
    frame_marker = 0
    scan_components = 0
    while pos + 1 < end:
        if data[pos] != 0xFF:
            # Junk between segments: Pillow skips it a byte at a time.
            following = data.find(b"\xff", pos)
            if following < 0:
                break
            stray += following - pos
            pos = following
            continue
        marker = data[pos + 1]
        entry = markers.get(0xFF00 | marker)
        if marker in (0xFF, 0x00):
            # A fill byte (Pillow moves on by one) or a stuffed zero (by two).
            step = 1 if marker == 0xFF else 2
            stray += step
            pos += step
        elif entry is None:
            break
        elif entry[2] is None:  # SOI, EOI, RSTn, JPGn: markers without a length
            stray += 2
            pos += 2
        elif pos + 4 > end:
            break
        else:
            segments += 1
            if segments > MAX_JPEG_SEGMENTS:
                raise ImageDecodeError(
                    f"the JPEG has more than {MAX_JPEG_SEGMENTS} metadata and table segments before its"
                    " image data; re-encode it as a normal JPEG"
                )
            length = max(int.from_bytes(data[pos + 2 : pos + 4], "big"), 2)
            if marker == 0xE1 and length >= 8 and data.startswith(b"Exif\0\0", pos + 4):
                # Pillow's info["exif"]: the first Exif segment, then each later one's payload.
                exif_parts.append(data[pos + (10 if exif_parts else 4) : pos + 2 + length])
            elif marker in _FRAME_MARKERS:
                frame, frame_marker = data[pos + 4 : pos + 2 + length], marker
            elif marker == 0xDA:
                scan_components = data[pos + 4] if pos + 4 < end else 0
                break
            pos += 2 + length
        if stray > MAX_JPEG_STRAY_BYTES:
            raise ImageDecodeError(
                f"the JPEG has more than {MAX_JPEG_STRAY_BYTES} bytes of padding or stray markers between"
                " its segments; re-encode it as a normal JPEG"
            )
    exif = b"".join(exif_parts) if exif_parts else None
    if exif is not None:
        _exif_orientation(exif)  # refuses an oversized directory before Image.open parses it
    return _JpegHeader(exif=exif, coefficient_bytes=_coefficient_bytes(frame, frame_marker, scan_components))


def _coefficient_bytes(frame: bytes | None, marker: int, scan_components: int) -> int:
    if frame is None or len(frame) < 6:
        return 0
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    sampling = [
        (max(frame[i] >> 4, 1), max(frame[i] & 15, 1)) for i in range(7, min(6 + 3 * count, len(frame)), 3)
    ]
    # A sequential JPEG whose first scan holds every component is decoded a row of blocks at a time;
    # anything else (progressive, or one scan per component) is buffered whole.
    if not sampling or (marker not in _PROGRESSIVE_FRAMES and scan_components >= count):
        return 0
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        # libjpeg (jdinput.c, jdcoefct.c): blocks per component, rounded up to whole MCUs.
        blocks_wide = _ceil_div(_ceil_div(width * h, h_max * 8), h) * h
        blocks_high = _ceil_div(_ceil_div(height * v, v_max * 8), v) * v
        total += blocks_wide * blocks_high * 64 * 2
    return total


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(numerator // -denominator)


def _check_decode_memory(image: Image.Image, jpeg: _JpegHeader | None) -> None:
    """Refuse, before decoding, an image whose decode would allocate more than MAX_DECODE_BYTES.

    The estimate is the decoded image in its own mode, one 4-byte-a-pixel copy (the EXIF transpose,
    or the conversion to RGB, made a tile at a time), their row tables, and what the decoder holds
    besides: row buffers, libwebp's canvases, libjpeg's coefficient buffer for a progressive JPEG.
    ``image.size`` is already the DCT-scaled size when draft() applies. Measured peaks stay within
    a few hundred KB of it (tests/serving/test_hostile_inputs.py).
    """
    width, height = image.size
    pixels = width * height
    per_pixel = _MODE_BYTES.get(image.mode, 4) + 4
    if image.format == "WEBP":
        per_pixel += _WEBP_DECODER_BYTES_PER_PIXEL
    # Pillow keeps a pointer per row of each image: a 1 x 12,000,000 strip's table is 96 MB. The
    # copy has as many rows as the longer side when it is a transpose.
    row_tables = 8 * (height + max(width, height))
    # PNG unfilters with two raw rows (up to 8 bytes a pixel: 16-bit RGBA); libjpeg keeps context and
    # upsampling rows at the output width.
    row_buffers = {"PNG": 16, "JPEG": 128, "MPO": 128}.get(image.format or "", 0) * width
    coefficients = jpeg.coefficient_bytes if jpeg is not None else 0
    needed = pixels * per_pixel + row_tables + row_buffers + coefficients
    if needed <= MAX_DECODE_BYTES:
        return
    if jpeg is not None and jpeg.coefficient_bytes:
        advice = (
            "a progressive JPEG keeps all its coefficients in memory; send a baseline JPEG or fewer pixels"
        )
    elif image.format in ("JPEG", "MPO"):
        advice = "a JPEG this narrow cannot be decoded at reduced size; send fewer pixels"
    else:
        advice = f"{image.format} decodes at full size; send a JPEG or fewer pixels"
    raise ImageTooLarge(
        f"decoding the {width}x{height} image needs about {needed / 1e6:.1f} MB, over the limit of"
        f" {MAX_DECODE_BYTES / 1e6:.1f} MB: {advice}"
    )


def _transpose_method(
    image: Image.Image, max_exif_entries: int | None = MAX_EXIF_ENTRIES
) -> Image.Transpose | None:
    """What ImageOps.exif_transpose would do to ``image``, read the way Image.getexif reads it."""
    exif = image.info.get("exif")
    if exif is None and "Raw profile type exif" in image.info:  # ImageMagick's PNG text chunk
        try:
            exif = bytes.fromhex("".join(str(image.info["Raw profile type exif"]).split("\n")[3:]))
        except ValueError:
            exif = None
    present, orientation = (
        _exif_orientation(exif, max_exif_entries) if isinstance(exif, bytes) else (False, None)
    )
    if not present:
        # Image.getexif falls back on XMP's tiff:Orientation when EXIF has no orientation entry.
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
        if isinstance(xmp, str | bytes) and xmp:
            pattern = _XMP_ORIENTATION if isinstance(xmp, str) else _XMP_ORIENTATION.encode()
            match = re.search(pattern, xmp)
            orientation = int(match[2]) if match else None
    return _ORIENTATION_TRANSPOSE.get(orientation)


_TIFF_HEADERS = (b"MM\x00\x2a", b"II\x2a\x00", b"MM\x2a\x00", b"II\x00\x2a")
# TIFF field type -> (struct code of one value, values per item): Pillow's loaders, by type. Types it
# reads as bytes or text (BYTE, ASCII, UNDEFINED) never equal an orientation; they still count as
# "present", as Pillow stores them.
_TIFF_TYPES = {
    1: ("B", 1), 2: ("B", 1), 3: ("H", 1), 4: ("L", 1), 5: ("L", 2), 6: ("b", 1), 7: ("B", 1),
    8: ("h", 1), 9: ("l", 1), 10: ("l", 2), 11: ("f", 1), 12: ("d", 1), 13: ("L", 1), 16: ("Q", 1),
}  # fmt: skip
_NUMERIC_TIFF_TYPES = frozenset({3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16})


def _exif_orientation(exif: bytes, max_entries: int | None = MAX_EXIF_ENTRIES) -> tuple[bool, object]:
    """(whether IFD0 holds an orientation entry, its first value) as Pillow's Exif reads it.

    Mirrors TiffImagePlugin.ImageFileDirectory_v2.load for IFD0 only: the first entry of a tag that
    it would store wins; unknown types, empty values, values past the end of the block and a block
    whose values add up to more than its size are skipped; a truncated entry or value ends the
    directory. A block Pillow cannot parse at all has no orientation (Pillow raised, which made the
    whole request fail). Raises :class:`ImageDecodeError` for a directory over ``max_entries``.
    """
    view = memoryview(exif)
    for _ in range(2):  # Image.Exif.load strips up to two "Exif\0\0" prefixes
        if view[:6] == b"Exif\0\0":
            view = view[6:]
    if len(view) < 8 or bytes(view[:4]) not in _TIFF_HEADERS:
        return False, None
    order = ">" if view[:2] == b"MM" else "<"
    (offset,) = struct.unpack_from(order + "L", view, 4)
    if offset + 2 > len(view):
        return False, None
    (count,) = struct.unpack_from(order + "H", view, offset)
    if max_entries is not None and count > max_entries:
        raise ImageDecodeError(
            f"the image's EXIF metadata has {count} entries in its first directory; the limit is"
            f" {max_entries}"
        )
    stored: set[int] = set()
    values_size = 0
    for index in range(count):
        start = offset + 2 + 12 * index
        if start + 12 > len(view):
            break
        tag, kind, items = struct.unpack_from(order + "HHL", view, start)
        if tag in stored or kind not in _TIFF_TYPES:
            continue
        code, per_item = _TIFF_TYPES[kind]
        size = items * per_item * struct.calcsize(order + code)
        if size > 4:
            (value_offset,) = struct.unpack_from(order + "L", view, start + 8)
            values_size += size
            if values_size > len(view):
                continue
            if value_offset + size > len(view):
                break
            value = view[value_offset : value_offset + size]
        else:
            value = view[start + 8 : start + 8 + size]
        if size == 0:
            continue
        stored.add(tag)
        if tag == EXIF_ORIENTATION_TAG:
            return True, _first_value(kind, value, order) if kind in _NUMERIC_TIFF_TYPES else None
    return False, None


def _first_value(kind: int, value: memoryview, order: str) -> object:
    code, per_item = _TIFF_TYPES[kind]
    numbers = struct.unpack_from(order + code * per_item, value)
    if per_item == 1:
        return numbers[0]
    numerator, denominator = numbers
    return Fraction(numerator, denominator) if denominator else None  # Pillow: NaN, never equal


def _short(exc: Exception) -> str:
    """The exception text, bounded: it goes back to the caller inside an error message."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _by_bands(image, _high_byte_to_rgb)
    if image.mode in ("P", "RGBA", "LA", "PA", "RGBa", "La"):
        return _by_bands(image, _composite_on_white)
    return image.convert("RGB")


def _high_byte_to_rgb(band: Image.Image) -> Image.Image:
    # 16-bit greyscale: Pillow's convert() clips instead of scaling, so scale to 8 bits by hand.
    pixels = np.asarray(band, dtype=np.uint32) >> 8
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")  # 2-D uint8: mode "L"


def _composite_on_white(band: Image.Image) -> Image.Image:
    # Transparent pixels become white, as a browser shows them, rather than arbitrary colours.
    rgba = band.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _by_bands(image: Image.Image, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """``convert`` (a per-pixel operation) applied a tile at a time, into one RGB image.

    The whole-image version held the source, an RGBA copy, a white RGBA background, the composite
    and the RGB result at once (20 bytes a pixel for RGBA: 800 MB for a 40 MP PNG); this holds the
    source and the result. Tiles are bands of rows, and pieces of a row for a strip too wide for one.
    """
    width, height = image.size
    tile_width = min(width, _BAND_BYTES // 4)
    tile_height = max(1, _BAND_BYTES // (4 * tile_width))
    if tile_width >= width and tile_height >= height:
        return convert(image)
    result = Image.new("RGB", image.size)
    for top in range(0, height, tile_height):
        for left in range(0, width, tile_width):
            box = (left, top, min(left + tile_width, width), min(top + tile_height, height))
            result.paste(convert(image.crop(box)), box[:2])
    return result


def image_to_tensor(image: Image.Image, transform: transforms.Compose) -> torch.Tensor:
    return transform(image)
