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


# Hostile inputs (tests/serving/test_hostile_inputs.py): small bodies that are expensive to serve.


def photo(width: int = 4000, height: int = 3000) -> Image.Image:
    """A photo-like picture (gradients and smooth noise, not one colour) whose 12 MP PNG is under 4 MB."""
    return scene(max(width // 20, 2), max(height // 20, 2)).resize((width, height), Image.Resampling.BILINEAR)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# PNG colour type -> channels: grey, RGB, grey + alpha, RGBA (Pillow: L, RGB, LA, RGBA at 8 bits).
PNG_COLOUR_TYPES = {0: 1, 2: 3, 4: 2, 6: 4}


def png_flat(
    width: int,
    height: int,
    colour_type: int = 2,
    bit_depth: int = 8,
    before_idat: bytes = b"",
    after_idat: bytes = b"",
) -> bytes:
    """A one-colour PNG of any size, compressed as a stream: a 40 MP one is ~130 KB.

    No buffer larger than 4 MB is made here, even for a 40,000,000 x 1 strip.
    ``before_idat``/``after_idat`` are extra chunks (see :func:`png_chunk`).
    """
    block = 1 << 22
    row_bytes = width * PNG_COLOUR_TYPES[colour_type] * bit_depth // 8
    compressor = zlib.compressobj(9)
    parts = []
    if row_bytes + 1 <= block:
        row = b"\0" + bytes([90]) * row_bytes
        rows_per_block = block // len(row)
        for start in range(0, height, rows_per_block):
            parts.append(compressor.compress(row * min(rows_per_block, height - start)))
    else:
        pixels = bytes([90]) * block
        for _ in range(height):
            parts.append(compressor.compress(b"\0"))
            for start in range(0, row_bytes, block):
                parts.append(compressor.compress(pixels[: min(block, row_bytes - start)]))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + before_idat
        + png_chunk(b"IDAT", b"".join(parts))
        + after_idat
        + png_chunk(b"IEND", b"")
    )


def tiff_ifd(
    entries: list[tuple[int, int, int, bytes]], big_endian: bool = False, tail: bytes = b""
) -> bytes:
    """An EXIF block (a TIFF header and IFD0) from raw (tag, type, count, 4-byte value) entries.

    ``tail`` is appended after the IFD: value data that entries may point at (offsets from the start).
    """
    order = ">" if big_endian else "<"
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(order + "I", 8)
    body = struct.pack(order + "H", len(entries))
    body += b"".join(
        struct.pack(order + "HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
        for tag, typ, count, value in entries
    )
    return head + body + struct.pack(order + "I", 0) + tail


def exif_orientation_block(orientation: int, padding_entries: int = 0, big_endian: bool = False) -> bytes:
    """EXIF with tag 0x0112 = ``orientation`` after ``padding_entries`` other SHORT tags (a hostile IFD0)."""
    order = ">" if big_endian else "<"
    padding = [
        (0x8000 + i % 0x7FFF, 3, 1, struct.pack(order + "H", i & 0xFFFF)) for i in range(padding_entries)
    ]
    return tiff_ifd([*padding, (EXIF_ORIENTATION, 3, 1, struct.pack(order + "H", orientation))], big_endian)


def png_with_exif(image: Image.Image, exif: bytes, after_idat: bool = False) -> bytes:
    """``image`` as a PNG with an eXIf chunk: before the pixels (as Pillow writes it) or after them."""
    data = encode(image, "PNG")
    end = data.rindex(b"IEND") - 4
    if after_idat:
        return data[:end] + png_chunk(b"eXIf", exif) + data[end:]
    first_idat = data.index(b"IDAT") - 4
    return data[:first_idat] + png_chunk(b"eXIf", exif) + data[first_idat:]


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment: FF, the marker, a big-endian length that counts itself, the payload."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_segments(segments: list[bytes], base: bytes | None = None) -> bytes:
    """``base`` (a small JPEG by default) with extra marker segments right after its SOI marker."""
    data = base if base is not None else jpeg(32, 32)
    return data[:2] + b"".join(segments) + data[2:]


def jpeg_app_segments(count: int, size: int = 8, marker: int = 0xE1, prefix: bytes = b"Exif\0\0") -> bytes:
    """A small JPEG with ``count`` extra APPn segments of ``size`` payload bytes each (the metadata bomb)."""
    payload = (prefix + bytes(size))[: max(size, len(prefix))]
    return jpeg_with_segments([jpeg_segment(marker, payload)] * count)


def flat_jpeg(width: int, height: int, mode: str = "RGB", **options) -> bytes:
    """A one-colour JPEG: a few hundred KB even at 40 MP; progressive, it needs a big coefficient buffer."""
    return encode(
        Image.new(mode, (width, height), 90 if mode == "L" else (90, 120, 150)[: len(mode)]),
        "JPEG",
        **options,
    )
