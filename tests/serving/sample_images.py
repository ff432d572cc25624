"""Image bytes in every format and mode the serving path must handle, and the bad ones it must refuse."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def scene(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """An asymmetric RGB picture (gradient + a bright block in one corner): rotations change it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    pixels = pixels.astype(np.uint8)
    pixels[: height // 3, : width // 4] = (255, 255, 40)
    pixels = np.clip(pixels.astype(int) + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 96, height: int = 64) -> bytes:
    return encode(scene(width, height), "JPEG", quality=90)


def jpeg_mpo() -> bytes:
    """A Multi-Picture JPEG (what many phones write); Pillow reports its format as "MPO"."""
    return encode(scene(), "MPO", save_all=True, append_images=[scene(48, 32)])


def png_rgba() -> bytes:
    image = scene().convert("RGBA")
    alpha = Image.linear_gradient("L").resize(image.size)
    image.putalpha(alpha)
    return encode(image, "PNG")


def png_grayscale() -> bytes:
    return encode(scene().convert("L"), "PNG")


def png_16bit_grayscale() -> bytes:
    pixels = (np.asarray(scene().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(pixels), "PNG")  # uint16 -> mode I;16


def png_palette() -> bytes:
    return encode(scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


def jpeg_cmyk() -> bytes:
    return encode(scene().convert("CMYK"), "JPEG", quality=90)


def jpeg_grayscale() -> bytes:
    return encode(scene().convert("L"), "JPEG", quality=90)


def webp() -> bytes:
    return encode(scene(), "WEBP", quality=90)


def webp_lossless_alpha() -> bytes:
    image = scene().convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return encode(image, "WEBP", lossless=True)


def jpeg_exif_rotated(upright: Image.Image) -> bytes:
    """Pixels stored as a phone held upright writes them, with EXIF orientation 6 ("rotate 90 cw to view").

    Orientation 6 means the stored image is the upright one turned 90 degrees counter-clockwise
    (PIL's ROTATE_90); a viewer turns it back clockwise.
    """
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return encode(stored, "JPEG", quality=95, exif=exif)


def jpeg_rotated_without_exif(upright: Image.Image) -> bytes:
    return encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95)


def tiny_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (120, 60, 30)), "PNG")


def large_jpeg() -> bytes:
    """A 12-megapixel photo-sized JPEG (4000 x 3000)."""
    return encode(scene(400, 300).resize((4000, 3000), Image.Resampling.BILINEAR), "JPEG", quality=85)


def gif() -> bytes:
    return encode(scene(), "GIF")


def bmp() -> bytes:
    return encode(scene(), "BMP")


def truncated_jpeg() -> bytes:
    data = jpeg(256, 256)
    return data[: len(data) // 2]


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming a huge image (2.5 gigapixels) with a tiny compressed body."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def progressive_jpeg(width: int = 96, height: int = 64) -> bytes:
    return encode(scene(width, height), "JPEG", quality=90, progressive=True)


def jpeg_scan_bomb(scans: int = 5000, size: int = 512) -> bytes:
    """A progressive JPEG whose last scan is repeated thousands of times: a few hundred KB that
    cost libjpeg a full pass over every coefficient per scan (the "progressive scan" DoS)."""
    data = progressive_jpeg(size, size)
    last_scan = data.rindex(b"\xff\xda")
    scan = data[last_scan:-2]  # SOS header + entropy-coded data, up to the EOI marker
    return data[:last_scan] + scan * scans + b"\xff\xd9"
