"""A small ImageFolder dataset that a CNN has to learn, for tests and the demo.

``python -m training.synthetic --out DIR [--classes K] [--per-class N] [--size PX] [--seed S]`` writes
``DIR/{train,valid,test}/NNN.Name/*.jpg`` in the dogImages layout. A class is a (shape, texture,
colour pair) recipe; every image draws it at a random position, scale and rotation over a noisy random
background, with jittered colours, so no single pixel statistic gives the class away: neighbouring
classes share a shape, a texture or a palette and differ in one of them. Output is a pure function of
the arguments (every image has its own seeded generator), so two runs write identical bytes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")
TEXTURES = ("solid", "stripes", "checker", "dots")
PALETTES = (
    ((220, 40, 40), (250, 200, 60)),
    ((40, 90, 220), (240, 240, 240)),
    ((40, 170, 70), (120, 40, 160)),
    ((250, 140, 20), (30, 30, 30)),
    ((20, 190, 200), (230, 60, 170)),
)
SPLITS = ("train", "valid", "test")
MAX_CLASSES = len(SHAPES) * len(TEXTURES) * len(PALETTES)


def class_recipe(index: int) -> tuple[str, str, int]:
    """(shape, texture, palette index) of class ``index``.

    Pairs of consecutive classes share a palette and triples share a texture, so even a 2-class set
    is separable only by shape; the mapping is a bijection onto all 120 recipes (tested).
    """
    if not 0 <= index < MAX_CLASSES:
        raise ValueError(f"class index must be in [0, {MAX_CLASSES})")
    shape = SHAPES[index % 6]
    texture = TEXTURES[(index // 6 + index // 3) % 4]
    palette = (index // 2 + index // 24) % 5
    return shape, texture, palette


def class_folder(index: int) -> str:
    """``001.Circle_solid_p0``: numbered like dogImages so the same folder-name rule applies."""
    shape, texture, palette = class_recipe(index)
    return f"{index + 1:03d}.{shape.capitalize()}_{texture}_p{palette}"


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: int = 30) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _texture(texture: str, size: int, fg, bg, rng: np.random.Generator) -> Image.Image:
    """A ``size`` x ``size`` RGB fill pattern at a random phase and period."""
    img = Image.new("RGB", (size, size), fg)
    if texture == "solid":
        return img
    draw = ImageDraw.Draw(img)
    period = max(4, int(size * rng.uniform(0.12, 0.22)))
    phase = int(rng.integers(0, period))
    half = max(1, period // 2)
    if texture == "stripes":
        for x in range(-period + phase, size + period, period):
            draw.polygon([(x, 0), (x + half, 0), (x + half - size, size), (x - size, size)], fill=bg)
            draw.polygon([(x + size, 0), (x + size + half, 0), (x + half, size), (x, size)], fill=bg)
    elif texture == "checker":
        for y in range(-period + phase, size, period):
            for x in range(-period + phase, size, period):
                if ((x + y - 2 * phase) // period) % 2 == 0:
                    draw.rectangle([x, y, x + period - 1, y + period - 1], fill=bg)
    elif texture == "dots":
        r = max(1, period // 4)
        for y in range(phase - period, size + period, period):
            for x in range(phase - period, size + period, period):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=bg)
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return img


def _shape_mask(shape: str, size: int) -> Image.Image:
    """A white-on-black ``L`` mask of ``shape`` filling a ``size`` x ``size`` box."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    s = size - 1
    if shape == "circle":
        draw.ellipse([0, 0, s, s], fill=255)
    elif shape == "square":
        draw.rectangle([s * 0.1, s * 0.1, s * 0.9, s * 0.9], fill=255)
    elif shape == "triangle":
        draw.polygon([(s / 2, 0), (s, s), (0, s)], fill=255)
    elif shape == "cross":
        draw.rectangle([s * 0.33, 0, s * 0.67, s], fill=255)
        draw.rectangle([0, s * 0.33, s, s * 0.67], fill=255)
    elif shape == "ring":
        draw.ellipse([0, 0, s, s], fill=255)
        draw.ellipse([s * 0.3, s * 0.3, s * 0.7, s * 0.7], fill=0)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = s / 2 if k % 2 == 0 else s / 5
            angle = math.pi / 2 + k * math.pi / 5
            points.append((s / 2 + radius * math.cos(angle), s / 2 - radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask


def render(index: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of class ``index``: the class's object at a random pose over a noisy background."""
    shape, texture, palette = class_recipe(index)
    fg, bg = (_jitter(c, rng) for c in PALETTES[palette])
    # Background: a random dim colour gradient plus Gaussian pixel noise, different for every image.
    c0, c1 = rng.integers(60, 200, size=3), rng.integers(60, 200, size=3)
    ramp = np.linspace(0.0, 1.0, size)[None, :, None]
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    background = c0 * (1 - ramp) + c1 * ramp + rng.normal(0, 18, size=(size, size, 3))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")

    obj = max(8, int(size * rng.uniform(0.4, 0.75)))
    pattern = _texture(texture, obj * 2, fg, bg, rng).rotate(float(rng.uniform(0, 180)))
    pattern = pattern.crop((obj // 2, obj // 2, obj // 2 + obj, obj // 2 + obj))
    mask = _shape_mask(shape, obj).rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR)
    x, y = (int(v) for v in rng.integers(0, size - obj + 1, size=2))
    canvas.paste(pattern, (x, y), mask)
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 8, size=(size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def split_counts(per_class: int) -> dict[str, int]:
    """Images per class and split: ``per_class`` for train, a quarter of it (at least 2) for the others."""
    held_out = max(2, math.ceil(per_class / 4))
    return {"train": per_class, "valid": held_out, "test": held_out}


def generate(out: str | Path, classes: int = 5, per_class: int = 40, size: int = 64, seed: int = 0) -> Path:
    """Write the dataset under ``out`` and return it. Existing files with the same names are overwritten."""
    if not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"--classes must be between 2 and {MAX_CLASSES}")
    if per_class < 1:
        raise ValueError("--per-class must be at least 1")
    if size < 16:
        raise ValueError("--size must be at least 16 pixels")
    out = Path(out)
    for split_index, (split, count) in enumerate(split_counts(per_class).items()):
        for index in range(classes):
            folder = out / split / class_folder(index)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                # One generator per image, keyed by everything that identifies it: reproducible and
                # independent of generation order (and of --classes for the classes both runs share).
                rng = np.random.default_rng([seed, split_index, index, n])
                render(index, size, rng).save(folder / f"{n:05d}.jpg", quality=92)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory (gets train/ valid/ test/)")
    parser.add_argument("--classes", type=int, default=5, help=f"number of classes, 2..{MAX_CLASSES}")
    parser.add_argument("--per-class", type=int, default=40, help="training images per class")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        out = generate(args.out, args.classes, args.per_class, args.size, args.seed)
    except ValueError as exc:
        raise SystemExit(f"training.synthetic: {exc}") from None
    counts = split_counts(args.per_class)
    total = sum(counts.values()) * args.classes
    print(f"wrote {total} images of {args.classes} classes ({counts}) to {out}")


if __name__ == "__main__":
    main()
