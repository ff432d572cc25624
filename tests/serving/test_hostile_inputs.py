"""Hostile inputs under the body limit: none may cost a worker much more than a normal photo does.

The bound (for any body under max_image_bytes, 4,000,000 bytes): CPU per request at most 10x, and
peak memory at most 2x, what a legal 12 MP photo costs through the same path, decode_image(min_side=
resize size) + eval_transform(224), measured in the same run. Every input must end as an RGB image the
preset turns into a 3 x 224 x 224 tensor, or as an ImageDecodeError (a 4xx): never another exception.

Measuring. Pillow, libjpeg and libwebp allocate with C malloc, which tracemalloc does not see, so a
child process measures resident memory: before each input it resets the peak (writing "5" to
/proc/self/clear_refs sets VmHWM to the current RSS) and afterwards reads VmHWM; the increment over
the RSS before the call is the request's peak, torch's import excluded. glibc keeps freed blocks for
reuse once its mmap threshold has adapted upwards, which would let a later input reuse an earlier
one's memory unseen; the child runs with a fixed threshold so that every large block is mapped and
unmapped, and RSS follows what is live. CPU is time.process_time(), never wall time. Where
clear_refs does not work, each input gets a fresh process and the peak is ru_maxrss over the RSS
before the call (an over-estimate when the import's peak was higher, which errs towards failing).
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import sample_images as images
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps, PngImagePlugin
from torchvision import transforms

from inference import inference as handlers
from inference.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_ASPECT_RATIO,
    MAX_DECODE_BYTES,
    MAX_EXIF_ENTRIES,
    MAX_JPEG_SEGMENTS,
    MAX_JPEG_STRAY_BYTES,
    CropToAspectRatio,
    ImageDecodeError,
    decode_image,
    eval_transform,
)
from stacks.config import MAX_IMAGE_BYTES_LIMIT

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BODY_BYTES = MAX_IMAGE_BYTES_LIMIT  # the largest max_image_bytes a stage may configure
CPU_FACTOR, MEMORY_FACTOR = 10, 2
HOSTILE_SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
# ImageOps.exif_transpose's table, written out here on purpose: the oracle must not share a typo with
# the implementation it checks.
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_CHILD = textwrap.dedent(
    """
    import gc, json, resource, sys, time
    import torch
    from inference.preprocessing import ImageDecodeError, decode_image, eval_transform, resize_size_for

    torch.set_num_threads(1)
    transform = eval_transform(224)
    min_side = resize_size_for(224)


    def status(name):
        with open("/proc/self/status") as lines:
            for line in lines:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(name)


    def reset_peak():
        with open("/proc/self/clear_refs", "w") as target:
            target.write("5")


    def peak_resets():
        try:
            reset_peak()
            before = status("VmRSS")
            block = b"\\1" * (64 << 20)
            grown = status("VmHWM") - before
            del block
            reset_peak()
            return grown > (60 << 20) and status("VmHWM") - before < (32 << 20)
        except (OSError, KeyError):
            return False


    def rss():
        try:
            return status("VmRSS")
        except (OSError, KeyError):
            import psutil

            return psutil.Process().memory_info().rss


    def measure(path, resettable):
        with open(path, "rb") as body:
            data = body.read()
        gc.collect()
        if resettable:
            reset_peak()
        before = rss()
        started = time.process_time()
        try:
            image = decode_image(data, min_side=min_side)
            tensor = transform(image)
            result = {"outcome": "ok", "mode": image.mode, "size": list(image.size)}
            result["shape"] = list(tensor.shape)
            del image, tensor
        except ImageDecodeError as exc:
            result = {"outcome": "refused", "status": exc.status_code, "message": str(exc)}
        except BaseException as exc:
            result = {"outcome": "error", "message": (type(exc).__name__ + ": " + str(exc))[:500]}
        result["cpu_s"] = time.process_time() - started
        if resettable:
            result["peak_bytes"] = status("VmHWM") - before
        else:
            result["peak_bytes"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
        return result


    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1], False)), flush=True)
    else:
        resettable = peak_resets()
        if resettable:
            # A regression that tries to allocate gigabytes fails with MemoryError instead of the machine.
            limit = status("VmSize") + (3 << 30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps({"resettable": resettable}), flush=True)
        for line in sys.stdin:
            print(json.dumps(measure(line.strip(), True)), flush=True)
    """
)


@dataclass
class Cost:
    outcome: str  # "ok" | "refused" | "error"
    cpu_s: float
    peak_bytes: int
    status: int | None = None
    message: str = ""
    mode: str = ""
    size: list[int] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)


class Measurer:
    """decode_image + eval_transform on one body at a time, in a child process (see the module doc)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "OMP_NUM_THREADS": "1",
            # A fixed threshold turns off glibc's adaptive one (see the module doc).
            "MALLOC_MMAP_THRESHOLD_": "131072",
        }
        self.stderr = (workdir / "child.stderr").open("w")
        self.child = subprocess.Popen(  # noqa: S603 - this interpreter with a fixed script, no shell
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=self.env,
            cwd=REPO_ROOT,
            text=True,
        )
        self.resettable = json.loads(self._read_line())["resettable"]
        self.count = 0

    def _read_line(self, timeout: float = 180) -> str:
        ready, _, _ = select.select([self.child.stdout], [], [], timeout)
        line = self.child.stdout.readline() if ready else ""
        if not line:
            self.child.kill()
            raise AssertionError(f"the measuring process died or hung: {self._stderr_tail()}")
        return line

    def _stderr_tail(self) -> str:
        self.stderr.flush()
        return (self.workdir / "child.stderr").read_text()[-3000:]

    def measure(self, data: bytes) -> Cost:
        self.count += 1
        path = self.workdir / f"body-{self.count}"
        path.write_bytes(data)
        try:
            if self.resettable:
                self.child.stdin.write(f"{path}\n")
                self.child.stdin.flush()
                line = self._read_line()
            else:
                line = subprocess.run(  # noqa: S603 - as above
                    [sys.executable, "-c", _CHILD, str(path)],
                    env=self.env,
                    cwd=REPO_ROOT,
                    capture_output=True,
                    text=True,
                    timeout=180,
                    check=True,
                ).stdout
        finally:
            path.unlink()
        return Cost(**json.loads(line))

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(timeout=30)
        self.stderr.close()


@dataclass(frozen=True)
class Bounds:
    cpu_s: float
    peak_bytes: int

    def check(self, cost: Cost, label: str = "") -> Cost:
        """The contract for every body: served as RGB 224 x 224 or refused with a 4xx, within the bounds."""
        assert cost.outcome in ("ok", "refused"), f"{label}: {cost.message}"
        if cost.outcome == "refused":
            assert cost.status is not None and 400 <= cost.status < 500, f"{label}: {cost}"
        else:
            assert cost.mode == "RGB" and cost.shape == [3, 224, 224], f"{label}: {cost}"
        assert cost.cpu_s <= CPU_FACTOR * self.cpu_s, f"{label}: {cost.cpu_s:.3f} CPU-s vs {self}"
        assert cost.peak_bytes <= MEMORY_FACTOR * self.peak_bytes, (
            f"{label}: peak {cost.peak_bytes / 1e6:.1f} MB vs {self}"
        )
        return cost

    def __str__(self) -> str:
        return f"a 12 MP photo's {self.cpu_s:.3f} CPU-s and {self.peak_bytes / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with tempfile.TemporaryDirectory(prefix="hostile-") as workdir:
        child = Measurer(Path(workdir))
        try:
            yield child
        finally:
            child.close()


def photo_bodies() -> dict[str, bytes]:
    """A realistic 12 MP (4000 x 3000) photo, as a JPEG and as a PNG (under the body limit)."""
    picture = images.photo(4000, 3000)
    return {"jpeg": images.encode(picture, "JPEG", quality=90), "png": images.encode(picture, "PNG")}


@pytest.fixture(scope="module")
def bounds(measurer: Measurer) -> Bounds:
    costs = []
    for name, body in photo_bodies().items():
        assert len(body) < MAX_BODY_BYTES, name
        for _ in range(2):
            cost = measurer.measure(body)
            assert cost.outcome == "ok", cost
            costs.append(cost)
    return Bounds(cpu_s=max(c.cpu_s for c in costs), peak_bytes=max(c.peak_bytes for c in costs))


def test_the_measurement_sees_c_allocations(measurer, bounds):
    """A 12 MP PNG decodes into Pillow's 48 MB buffer: a measurement that missed it would prove nothing."""
    assert bounds.peak_bytes > 4 * 4000 * 3000
    assert 0 < bounds.cpu_s < 30


# --- extreme aspect ratios -----------------------------------------------------------------------


def test_the_strips_from_the_report_are_served_cheaply_or_refused(measurer, bounds):
    """Before: 1 x 60,000 became a 256 x 15,360,000 image, 1 x 1,000,000 OOM-killed the worker and
    40,000,000 x 1 raised OverflowError (a 500)."""
    assert bounds.check(measurer.measure(images.png_flat(1, 60_000)), "1x60000").outcome == "ok"
    assert bounds.check(measurer.measure(images.png_flat(1, 1_000_000)), "1x1000000").outcome == "ok"
    wide = bounds.check(measurer.measure(images.png_flat(40_000_000, 1)), "40000000x1")
    # 40 MP decode at full size in a PNG: 320 MB, over MAX_DECODE_BYTES, refused before decoding.
    assert (wide.outcome, wide.status) == ("refused", 413)


@st.composite
def strips(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    short = draw(st.integers(1, 4))
    long = draw(st.integers(2, 65_500 if fmt == "JPEG" else 12_000_000 // short))
    width, height = (short, long) if draw(st.booleans()) else (long, short)
    if fmt == "JPEG":
        return images.flat_jpeg(width, height, draw(st.sampled_from(["RGB", "L"])))
    return images.png_flat(width, height, draw(st.sampled_from(sorted(images.PNG_COLOUR_TYPES))))


@HOSTILE_SETTINGS
@given(body=strips())
def test_strips_of_any_length_are_served_within_the_bounds(measurer, bounds, body):
    assert len(body) < MAX_BODY_BYTES
    bounds.check(measurer.measure(body))


def plain_preset(image_size: int = 224, resize_size: int = 256) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(resize_size, antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


ORDINARY_SIZES = [(4000, 3000), (3000, 4000), (1920, 1080), (1080, 1920), (1200, 400), (400, 1200)]
ORDINARY_SIZES += [(333, 333), (257, 256), (16 * 97, 97), (97, 16 * 97), (4032, 3024), (6000, 1500)]


@pytest.mark.parametrize("size", ORDINARY_SIZES)
def test_ordinary_aspect_ratios_come_out_of_the_preset_bit_identical(size):
    """Up to MAX_ASPECT_RATIO:1 the pre-crop does nothing: the preset is Resize + CenterCrop as before."""
    picture = images.photo(*size)
    assert torch.equal(eval_transform(224)(picture), plain_preset()(picture))
    assert torch.equal(eval_transform(64, 73)(picture), plain_preset(64, 73)(picture))


@pytest.mark.parametrize("size", [(40, 3000), (3000, 40), (7, 1001), (1, 999)])
def test_beyond_the_ratio_the_crop_keeps_what_the_centre_crop_kept(size):
    """The strips that change change little: the pre-crop keeps the centre, 16x the short side wide."""
    picture = Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    )
    difference = (eval_transform(224)(picture) - plain_preset()(picture)).abs()
    assert float(difference.mean()) < 0.05


def test_the_pre_crop_is_centred_and_works_on_tensors_too():
    crop = CropToAspectRatio()
    for width, height in [(3, 1000), (3, 1001), (1000, 4), (1001, 4)]:
        picture = images.photo(width, height)
        cropped = crop(picture)
        short = min(width, height)
        assert min(cropped.size) == short and max(cropped.size) in (
            MAX_ASPECT_RATIO * short,
            MAX_ASPECT_RATIO * short + 1,
        )
        assert (max(width, height) - max(cropped.size)) % 2 == 0  # the same margin on both ends
        tensor = transforms.functional.pil_to_tensor(picture)
        assert torch.equal(crop(tensor), transforms.functional.pil_to_tensor(cropped))


# --- metadata --------------------------------------------------------------------------------------


def header_segments(jpeg: bytes) -> int:
    """Marker segments with a length before the first scan of an ordinary JPEG."""
    count, pos = 0, 2
    while jpeg[pos + 1] != 0xDA:
        count += 1
        pos += 2 + struct.unpack_from(">H", jpeg, pos + 2)[0]
    return count


def test_jpeg_metadata_segments_are_bounded_before_pillow_parses_them():
    base = images.jpeg(32, 32)
    room = MAX_JPEG_SEGMENTS - header_segments(base) - 1  # the SOS segment counts too
    at_limit = images.jpeg_with_segments([images.jpeg_segment(0xE1, b"Exif\0\0")] * room, base)
    over_limit = images.jpeg_with_segments([images.jpeg_segment(0xE1, b"Exif\0\0")] * (room + 1), base)
    assert decode_image(at_limit).size == (32, 32)
    with pytest.raises(ImageDecodeError, match=f"more than {MAX_JPEG_SEGMENTS} metadata"):
        decode_image(over_limit)


def with_stray(stray: bytes, count: int) -> bytes:
    """A JPEG with ``count`` copies of ``stray`` after a first (empty comment) segment.

    A JPEG must start FF D8 FF, so junk cannot come straight after the start-of-image marker.
    """
    base = images.jpeg(32, 32)
    return base[:2] + images.jpeg_segment(0xFE, b"") + stray * count + base[2:]


@pytest.mark.parametrize("stray", [b"\xff", b"\x01", b"\xff\xd0"], ids=["fill", "junk", "restart-marker"])
def test_stray_bytes_between_jpeg_segments_are_bounded(stray):
    at_limit = MAX_JPEG_STRAY_BYTES // len(stray)
    assert decode_image(with_stray(stray, at_limit)).size == (32, 32)
    with pytest.raises(ImageDecodeError, match="padding or stray markers"):
        decode_image(with_stray(stray, at_limit + 1))


def test_the_app_segment_body_from_the_report_is_refused_at_once():
    body = images.jpeg_app_segments(200_000, 8)  # 2.4 MB of APP1 segments: 2 CPU-s in Pillow
    started = time.process_time()
    with pytest.raises(ImageDecodeError, match="segments"):
        decode_image(body)
    assert time.process_time() - started < 0.1


SEGMENT_MARKERS = [*range(0xE0, 0xF0), 0xFE, 0xDB, 0xC4, 0xDD]
SEGMENT_PREFIXES = [
    b"",
    b"Exif\0\0",
    b"ICC_PROFILE\0\x01\x01",
    b"Photoshop 3.0\0",
    b"http://ns.adobe.com/xap/1.0/\0",
    b"MPF\0",
    b"JFIF\0",
    b"Adobe",
]


@st.composite
def segment_payloads(draw: st.DrawFn, max_size: int) -> bytes:
    prefix = draw(st.sampled_from(SEGMENT_PREFIXES))
    filler = draw(
        st.sampled_from(
            [
                b"\0",
                b"8BIM\x04\x04\0\0\0\0\0\0",  # empty Photoshop resources: Pillow loops over each
                b'<x tiff:Orientation="6"/>',
                images.exif_orientation_block(6, 3)[:24],
            ]
        )
    )
    size = draw(st.integers(0, max_size))
    body = draw(st.binary(max_size=32)) + filler * (size // len(filler) + 1)
    return (prefix + body)[: max(len(prefix), size)][:65_533]


@st.composite
def jpeg_metadata_bodies(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A small JPEG behind many marker segments (and perhaps a run of stray bytes); over the limit?"""
    many = draw(st.booleans())
    count = draw(st.integers(0, 2 * MAX_JPEG_SEGMENTS if many else 50))
    payload = segment_payloads(max_size=MAX_BODY_BYTES // (3 * MAX_JPEG_SEGMENTS) if many else 65_533)
    segments = [
        images.jpeg_segment(draw(st.sampled_from(SEGMENT_MARKERS)), draw(payload)) for _ in range(count)
    ]
    base = images.jpeg(draw(st.integers(8, 64)), draw(st.integers(8, 64)))
    over = count + header_segments(base) + 1 > MAX_JPEG_SEGMENTS
    if draw(st.booleans()):
        stray = draw(st.sampled_from([b"\xff", b"\xff\xd0", b"\xff\xd8"]))
        run = draw(st.integers(0, 2 * MAX_JPEG_STRAY_BYTES // len(stray)))
        segments.insert(draw(st.integers(0, len(segments))), stray * run)
        over = over or len(stray) * run > MAX_JPEG_STRAY_BYTES
    return images.jpeg_with_segments(segments, base), over


@HOSTILE_SETTINGS
@given(case=jpeg_metadata_bodies())
def test_jpegs_made_of_metadata_segments_are_served_within_the_bounds(measurer, bounds, case):
    body, over_a_limit = case
    assert len(body) < MAX_BODY_BYTES
    cost = bounds.check(measurer.measure(body))
    if over_a_limit:
        assert cost.outcome == "refused", cost


def orientation_exif(orientation: int, kind: int = 3, padding: int = 0, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    code = {1: "B", 3: "H", 4: "L", 7: "B", 9: "l"}[kind]
    value = struct.pack(order + code, orientation % (256 if code == "B" else 65_536))
    # Filler tags from 0x0200 up: none is the orientation tag (0x0112), which would win as the first.
    filler = [(0x0200 + i % 0xFD00, 3, 1, struct.pack(order + "H", i & 0xFFFF)) for i in range(padding)]
    return images.tiff_ifd([*filler, (images.EXIF_ORIENTATION, kind, 1, value)], big_endian)


def with_exif(container: str, picture: Image.Image, exif: bytes) -> bytes:
    if container == "png":
        return images.png_with_exif(picture, exif)
    if container == "png-after-pixels":
        return images.png_with_exif(picture, exif, after_idat=True)
    if container == "webp":
        return images.encode(picture, "WEBP", quality=90, exif=b"Exif\0\0" + exif)
    # JPEG: Pillow reassembles an EXIF block over 64 KB from consecutive APP1 segments.
    block = b"Exif\0\0" + exif
    parts = [
        block[:65_000],
        *(b"Exif\0\0" + block[i : i + 65_000] for i in range(65_000, len(block), 65_000)),
    ]
    return images.jpeg_with_segments(
        [images.jpeg_segment(0xE1, part) for part in parts], images.jpeg(*picture.size)
    )


CONTAINERS = ["png", "png-after-pixels", "webp", "jpeg"]


@HOSTILE_SETTINGS
@given(
    container=st.sampled_from(CONTAINERS),
    width=st.integers(1, 48),
    height=st.integers(1, 48),
    orientation=st.integers(0, 9) | st.integers(0, 65_535),
    kind=st.sampled_from([3, 3, 4, 9, 1, 7]),
    padding=st.integers(0, MAX_EXIF_ENTRIES + 8) | st.integers(0, 65_534),
    big_endian=st.booleans(),
)
@example(container="png", width=32, height=24, orientation=6, kind=3, padding=65_000, big_endian=False)
def test_images_with_large_exif_blocks_are_served_within_the_bounds(
    measurer, bounds, container, width, height, orientation, kind, padding, big_endian
):
    body = with_exif(
        container, images.scene(width, height), orientation_exif(orientation, kind, padding, big_endian)
    )
    assert len(body) < MAX_BODY_BYTES
    cost = bounds.check(measurer.measure(body))
    if padding + 1 > MAX_EXIF_ENTRIES:
        assert cost.outcome == "refused" and "EXIF" in cost.message, cost
    else:
        assert cost.outcome == "ok", cost
        turned = kind in (3, 4, 9) and orientation in (5, 6, 7, 8)
        assert cost.size == ([height, width] if turned else [width, height])


def test_exif_entries_are_bounded_at_the_limit():
    picture = images.scene(32, 24)
    at_limit = images.png_with_exif(picture, orientation_exif(6, padding=MAX_EXIF_ENTRIES - 1))
    over_limit = images.png_with_exif(picture, orientation_exif(6, padding=MAX_EXIF_ENTRIES))
    assert decode_image(at_limit).size == (24, 32)
    with pytest.raises(ImageDecodeError, match=f"the limit is {MAX_EXIF_ENTRIES}"):
        decode_image(over_limit)
    jpeg_over = with_exif("jpeg", picture, orientation_exif(6, padding=MAX_EXIF_ENTRIES))
    with pytest.raises(ImageDecodeError, match="EXIF"):
        decode_image(jpeg_over)


def test_the_exif_body_from_the_report_costs_milliseconds():
    """A PNG with a 65,000-entry EXIF block and an orientation: ~7 s inside ImageOps.exif_transpose."""
    body = images.png_with_exif(images.scene(), images.exif_orientation_block(6, 65_000))
    started = time.process_time()
    with pytest.raises(ImageDecodeError, match="EXIF"):
        decode_image(body)
    assert time.process_time() - started < 0.1


def reference_upright(body: bytes) -> np.ndarray:
    """What ImageOps.exif_transpose chooses (Image.getexif's orientation, its table), without its rewrite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(body))
        image.load()
        try:
            method = ORIENTATION_TRANSPOSE.get(image.getexif().get(images.EXIF_ORIENTATION, 1))
        except Exception:
            method = None  # Pillow cannot read the block: the old code answered 400, decode_image ignores it
    return np.asarray((image if method is None else image.transpose(method)).convert("RGB"))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_gives_the_pixels_exif_transpose_gives(container, orientation):
    upright = images.scene(97, 61)
    body = with_exif(container, upright, orientation_exif(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(body))).convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(body)), expected)


def test_orientation_from_xmp_alone_is_applied_as_getexif_reads_it():
    upright = images.scene(97, 61)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    body = images.encode(stored, "PNG", pnginfo=info)
    assert np.array_equal(np.asarray(decode_image(body)), reference_upright(body))
    assert decode_image(body).size == (97, 61)


TIFF_TYPES = st.sampled_from([0, 1, 2, 3, 3, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 99])


@st.composite
def exif_blocks(draw: st.DrawFn) -> bytes:
    order = draw(st.sampled_from(["<", ">"]))
    tail = draw(st.binary(max_size=64))
    size = 8 + 2 + 12 * 40 + 4 + len(tail)
    entries = []
    for _ in range(draw(st.integers(0, 12))):
        tag = draw(st.sampled_from([images.EXIF_ORIENTATION] * 3 + [0x0100, 0x0110, 0x8769]))
        count = draw(st.sampled_from([0, 1, 1, 1, 2, 3, 9]) | st.integers(0, 2**32 - 1))
        value = draw(
            st.sampled_from([struct.pack(order + "H", o) + b"\0\0" for o in range(9)])
            | st.builds(lambda o: struct.pack(order + "L", o), st.integers(0, size + 16))
            | st.binary(min_size=4, max_size=4)
        )
        entries.append((tag, draw(TIFF_TYPES), count, value))
    return images.tiff_ifd(entries, big_endian=order == ">", tail=tail)


@settings(max_examples=100, deadline=None)
@given(exif=exif_blocks())
def test_orientation_is_read_as_pillow_reads_it_for_any_exif_block(exif):
    """Random IFD0s (duplicate, truncated, mistyped, out-of-range entries): exif_transpose's choice."""
    body = images.png_with_exif(images.scene(23, 11), exif)
    assert np.array_equal(np.asarray(decode_image(body)), reference_upright(body))


# --- decode memory ---------------------------------------------------------------------------------


def test_the_decode_budget_is_exact_at_its_edge():
    """An RGB PNG costs 8 bytes a pixel (Pillow's 4, and 4 for one copy) plus row tables and buffers.

    4032 x 3096: 8 * 4032 * 3096 + 8 * (3096 + 4032) + 16 * 4032 = 99,988,608 bytes; one row more is over.
    """
    assert MAX_DECODE_BYTES == 100_000_000
    assert decode_image(images.png_flat(4032, 3096)).size == (4032, 3096)
    with pytest.raises(ImageDecodeError, match="decoding the 4032x3097 image needs") as refused:
        decode_image(images.png_flat(4032, 3097))
    assert refused.value.status_code == 413


def oriented_png(mode: str, size: tuple[int, int]) -> bytes:
    return images.png_with_exif(
        Image.new(mode, size, 90 if mode in ("L", "I;16") else (90,) * len(mode)), orientation_exif(6)
    )


LARGEST_LEGAL = {
    # Full-size decodes at the budget, each with an EXIF rotation (the copy the budget allows for).
    "png-rgb-12.2MP-rotated": lambda: oriented_png("RGB", (4032, 3024)),
    "png-rgb-at-the-budget-rotated": lambda: oriented_png("RGB", (4032, 3096)),
    "png-rgba-12.2MP-rotated": lambda: oriented_png("RGBA", (4032, 3024)),
    "png-grey-19.5MP-rotated": lambda: oriented_png("L", (5000, 3900)),
    "png-16bit-16MP-rotated": lambda: oriented_png("I;16", (4600, 3500)),
    "webp-6MP-rotated": lambda: images.encode(
        images.photo(3000, 2000), "WEBP", quality=90, exif=b"Exif\0\0" + orientation_exif(6)
    ),
    "jpeg-progressive-30MP": lambda: images.flat_jpeg(6400, 4700, progressive=True),
    "jpeg-strip-65500x600": lambda: images.flat_jpeg(65_500, 600),
    "jpeg-40MP": lambda: images.flat_jpeg(8000, 5000),
    # Costly without being over any limit: Pillow walks PNG chunks in Python, ~5 us each.
    "png-4MB-of-empty-chunks": lambda: (
        lambda small: small[:33] + images.png_chunk(b"abCD", b"") * 320_000 + small[33:]
    )(images.encode(images.scene(32, 32), "PNG")),
}
OVER_THE_BUDGET = {
    "png-rgb-40MP": lambda: images.png_flat(8000, 5000),
    "png-rgba-40MP": lambda: images.png_flat(8000, 5000, colour_type=6),
    "png-16bit-40MP": lambda: images.png_flat(8000, 5000, colour_type=0, bit_depth=16),
    "webp-12MP": lambda: images.encode(Image.new("RGB", (4000, 3000), (9, 99, 199)), "WEBP", lossless=True),
    "jpeg-progressive-40MP": lambda: images.flat_jpeg(8000, 5000, progressive=True),
    "jpeg-progressive-444-20MP": lambda: images.flat_jpeg(5000, 4000, progressive=True, subsampling=0),
    "png-rgba-strip-12000000x1": lambda: images.png_flat(12_000_000, 1, colour_type=6),
    "png-strip-1x12000000": lambda: images.png_flat(1, 12_000_000),
    "jpeg-strip-65500x511": lambda: images.flat_jpeg(65_500, 511),
}


@pytest.mark.parametrize("name", LARGEST_LEGAL)
def test_the_largest_legal_inputs_are_served_within_the_bounds(measurer, bounds, name):
    body = LARGEST_LEGAL[name]()
    assert len(body) < MAX_BODY_BYTES
    assert bounds.check(measurer.measure(body), name).outcome == "ok"


@pytest.mark.parametrize("name", OVER_THE_BUDGET)
def test_inputs_over_the_decode_budget_are_refused_before_decoding(measurer, bounds, name):
    body = OVER_THE_BUDGET[name]()
    assert len(body) < MAX_BODY_BYTES
    cost = bounds.check(measurer.measure(body), name)
    assert (cost.outcome, cost.status) == ("refused", 413), cost
    assert cost.peak_bytes < 8_000_000 and cost.cpu_s < bounds.cpu_s, cost


def test_unsupported_formats_are_refused_without_being_parsed(measurer, bounds):
    """A TIFF is a 415 either way; Pillow's TIFF plugin would first walk all 65,000 entries."""
    tiff = images.tiff_ifd([(0x100 + i, 7, 4_000_000, b"\0\0\0\0") for i in range(65_000)])
    cost = bounds.check(measurer.measure(tiff))
    assert (cost.outcome, cost.status) == ("refused", 415) and cost.cpu_s < 0.1, cost


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16"])
def test_conversions_made_by_bands_give_the_whole_image_pixels(mode):
    """Tall images convert a band of rows at a time; a per-pixel operation gives the same pixels."""
    picture = images.photo(300, 3000)
    if mode in ("RGBA", "LA"):
        picture = picture.convert("RGBA")
        picture.putalpha(Image.linear_gradient("L").resize(picture.size))
        picture = picture.convert(mode)
        expected = Image.alpha_composite(Image.new("RGBA", picture.size, "white"), picture.convert("RGBA"))
    elif mode == "P":
        picture = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        picture.info["transparency"] = 5
        expected = Image.alpha_composite(Image.new("RGBA", picture.size, "white"), picture.convert("RGBA"))
    else:
        picture = Image.fromarray((np.asarray(picture.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
        expected = Image.fromarray((np.asarray(picture, dtype=np.uint32) >> 8).astype(np.uint8))
    body = images.encode(picture, "PNG")
    assert np.array_equal(np.asarray(decode_image(body)), np.asarray(expected.convert("RGB")))


# --- top_k -----------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    value=st.text(max_size=40)
    | st.text(alphabet="0123456789", min_size=1, max_size=6_000)
    | st.integers(0, 10**6).map(str),
    prefix=st.sampled_from(["top_k=", "a=b, top_k = ", "top_k=0"]),
)
@example(value="9" * 5_000, prefix="top_k=")
@example(value="00005", prefix="top_k=")
def test_any_top_k_attribute_is_an_answer_or_a_400_at_once(value, prefix):
    attributes = prefix + value
    tracemalloc.start()
    started = time.process_time()
    try:
        top_k = handlers.parse_top_k(attributes)
    except handlers.RequestError as exc:
        assert (exc.status_code, exc.code) == (400, "invalid_top_k")
    else:
        assert isinstance(top_k, int) and 1 <= top_k <= 10_000
    finally:
        cpu = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert cpu < 0.01 and peak < 64_000 + 4 * len(attributes)


def test_a_top_k_of_thousands_of_digits_is_a_400_not_a_500():
    with pytest.raises(handlers.RequestError) as refused:
        handlers.parse_top_k("top_k=" + "1" * 5_000)
    assert (refused.value.status_code, refused.value.code) == (400, "invalid_top_k")
    assert handlers.parse_top_k("top_k=10000") == 10_000 and handlers.parse_top_k("top_k=00007") == 7
