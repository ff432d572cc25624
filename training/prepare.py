"""Write a resized copy of an ImageFolder once, so that no epoch decodes more pixels than it uses.

    python -m training.prepare --data-dir IN --out OUT --short-side N [--quality Q] [--workers K]

Every image of ``IN/{train,valid,test}/<class>/`` (the files ``torchvision.datasets.ImageFolder``
would find) is decoded as training decodes it (:func:`training.data.load_training_image`: the
endpoint's EXIF orientation and RGB conversion, truncated files tolerated), scaled so that its short
side is ``N`` (never up: smaller images keep their pixels) with the evaluation preset's resize
(torchvision ``Resize(N)``, bilinear with antialiasing), and saved as a baseline JPEG of quality ``Q``
(default 93) without chroma subsampling at the same relative path (a file that is not ``.jpg``/``.jpeg``
gets ``.jpg`` appended). Outputs are upright and carry no EXIF, so any reader sees what training sees.
Full-resolution chroma because the sources are already 4:2:0: halving it a second time was most of
the re-encode's difference to the original (the largest pixel error went from ~45 to ~18 of 255 on
photo-like test images at 256 px), for about 1.4x the bytes and no measurable extra decode time.

With ``N`` equal to the evaluation resize (256 for 224 px crops) the evaluation preset's resize of a
prepared image is a copy: validation differs from the endpoint's view of the original by one JPEG
re-encode only. Training's random crops see at most ``N`` pixels on the short side.

A rerun skips every output that is up to date: newer than its source, and written with the same
``N`` and ``Q``, which each output records in its JPEG comment. Outputs are written to a temporary
name and renamed, so an interrupted run never leaves a partial file that a rerun would take as done.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from torchvision.datasets import folder
from torchvision.transforms import functional as F

from .data import load_training_image

SPLITS = ("train", "valid", "test")
REQUIRED_SPLITS = ("train", "valid")
DEFAULT_QUALITY = 93
SUBSAMPLING = "4:4:4"
JPEG_SUFFIXES = (".jpg", ".jpeg")


class PrepareError(ValueError):
    """A bad argument or input directory; the message names it."""


@dataclass
class SplitReport:
    images: int = 0
    written: int = 0
    up_to_date: int = 0
    failed: list[str] = field(default_factory=list)
    source_bytes: int = 0
    output_bytes: int = 0


def settings_comment(short_side: int, quality: int) -> bytes:
    return f"training.prepare short_side={short_side} quality={quality} subsampling={SUBSAMPLING}".encode()


def output_path(relative: Path) -> Path:
    """``a.jpg`` stays ``a.jpg``; ``a.png`` becomes ``a.png.jpg``, which no other source can also become."""
    if relative.suffix.lower() in JPEG_SUFFIXES:
        return relative
    return relative.with_name(relative.name + ".jpg")


def split_images(data_dir: Path, split: str) -> tuple[list[str], list[Path]]:
    """(class folders, image paths relative to ``data_dir``) of one split, found as ImageFolder finds them."""
    root = data_dir / split
    classes, class_to_idx = folder.find_classes(root)
    samples = folder.make_dataset(root, class_to_idx, extensions=folder.IMG_EXTENSIONS, allow_empty=True)
    return classes, [Path(path).relative_to(data_dir) for path, _ in samples]


def is_up_to_date(source: Path, output: Path, comment: bytes) -> bool:
    try:
        if output.stat().st_mtime < source.stat().st_mtime:
            return False
        with Image.open(output) as image:  # reads the header only
            return image.info.get("comment") == comment
    except (OSError, SyntaxError):
        return False


def prepare_image(source: Path, output: Path, short_side: int, quality: int) -> int:
    """Write ``output`` from ``source``; returns its size in bytes."""
    image = load_training_image(str(source))
    if min(image.size) > short_side:
        image = F.resize(image, short_side, antialias=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    comment = settings_comment(short_side, quality)
    image.save(partial, "JPEG", quality=quality, subsampling=SUBSAMPLING, comment=comment)
    os.replace(partial, output)
    return output.stat().st_size


def _job(args: tuple[Path, Path, int, int]) -> tuple[str, int | str]:
    """One file in a pool worker: ("written", bytes), ("up to date", bytes) or ("failed", message)."""
    source, output, short_side, quality = args
    if is_up_to_date(source, output, settings_comment(short_side, quality)):
        return "up to date", output.stat().st_size
    try:
        return "written", prepare_image(source, output, short_side, quality)
    except Exception as exc:  # one bad file is reported with its path; the others still get written
        return "failed", f"{source}: {type(exc).__name__}: {exc}"


def check_dirs(data_dir: Path, out: Path) -> list[str]:
    """The splits to prepare, or a :class:`PrepareError` that says what is wrong with the directories."""
    if not data_dir.is_dir():
        raise PrepareError(f"--data-dir {data_dir} is not a directory")
    missing = [split for split in REQUIRED_SPLITS if not (data_dir / split).is_dir()]
    if missing:
        raise PrepareError(
            f"--data-dir {data_dir} has no {' or '.join(s + '/' for s in missing)}: expected an ImageFolder"
            " with train/, valid/ and optionally test/, one folder per class"
        )
    resolved_in, resolved_out = data_dir.resolve(), out.resolve()
    if resolved_out == resolved_in or resolved_in in resolved_out.parents:
        raise PrepareError(f"--out {out} is inside --data-dir {data_dir}; write the copy elsewhere")
    return [split for split in SPLITS if (data_dir / split).is_dir()]


def prepare(
    data_dir: str | Path,
    out: str | Path,
    short_side: int,
    quality: int = DEFAULT_QUALITY,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, SplitReport]:
    """Prepare every split of ``data_dir`` into ``out``; a report per split."""
    data_dir, out = Path(data_dir), Path(out)
    if short_side < 1:
        raise PrepareError("--short-side must be at least 1")
    if not 1 <= quality <= 95:
        # Pillow's JPEG docs: above 95 "should be avoided"; the file grows for almost no quality.
        raise PrepareError("--quality must be in 1..95")
    splits = check_dirs(data_dir, out)
    reports: dict[str, SplitReport] = {}
    with _executor(workers) as pool:
        for split in splits:
            try:
                classes, images = split_images(data_dir, split)
            except FileNotFoundError as exc:
                raise PrepareError(f"--data-dir {data_dir}: {exc}") from None
            for name in classes:  # every class folder, so class indices stay those of the source
                (out / split / name).mkdir(parents=True, exist_ok=True)
            jobs = [(data_dir / rel, out / output_path(rel), short_side, quality) for rel in images]
            report = reports[split] = SplitReport(images=len(jobs))
            for (source, _, _, _), (status, value) in zip(jobs, _map(pool, jobs), strict=True):
                report.source_bytes += source.stat().st_size
                if status == "failed":
                    report.failed.append(str(value))
                    log(f"training.prepare: failed: {value}")
                    continue
                report.output_bytes += int(value)
                if status == "written":
                    report.written += 1
                else:
                    report.up_to_date += 1
            log(summary_line(split, report))
    return reports


def summary_line(split: str, report: SplitReport) -> str:
    ratio = report.output_bytes / report.source_bytes if report.source_bytes else 0.0
    return (
        f"{split}: {report.images} images: {report.written} written, {report.up_to_date} up to date, "
        f"{len(report.failed)} failed; "
        f"{_size(report.source_bytes)} -> {_size(report.output_bytes)} ({ratio:.0%})"
    )


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} KB"


class _Inline:
    """The executor interface for ``--workers 1``: no pool, no pickling, errors in this process."""

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> Iterator:
        return map(fn, items)

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _executor(workers: int) -> _Inline | ProcessPoolExecutor:
    return _Inline() if workers <= 1 else ProcessPoolExecutor(max_workers=workers)


def _map(pool: _Inline | ProcessPoolExecutor, jobs: list) -> Iterator:
    # Chunks amortise the round trip to a worker (a few ms) over images that take ~10 ms each.
    return pool.map(_job, jobs, chunksize=16)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="ImageFolder with train/ valid/ [test/]")
    parser.add_argument("--out", required=True, type=Path, help="where the resized copy goes")
    parser.add_argument(
        "--short-side",
        required=True,
        type=int,
        help="short side in pixels after resizing; never upscales (256 for --image-size 224)",
    )
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality, 1..95")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        reports = prepare(args.data_dir, args.out, args.short_side, args.quality, args.workers)
    except PrepareError as exc:
        raise SystemExit(f"training.prepare: {exc}") from None
    failed = sum(len(r.failed) for r in reports.values())
    if failed:
        print(f"training.prepare: {failed} image(s) could not be decoded (listed above)", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
