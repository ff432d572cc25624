"""## Preprocessing: JPEG bytes to the model tensor, full decode against draft (DCT-scaled) decode."""

from __future__ import annotations

from typing import Any

from .text import f2, failed, mmm, table

TITLE = "## Preprocessing: JPEG bytes to the model tensor"


def megapixels(pixels: str) -> float:
    """``"4032x3024"`` -> 12.19."""
    width, height = (int(side) for side in pixels.split("x"))
    return width * height / 1e6


def preprocess_section(result: dict[str, Any]) -> str:
    if text := failed(result):
        return f"{TITLE}\n\n{text}"
    rows = []
    for name, entry in result["images"].items():
        ms = entry["ms"]
        diff = entry["tensor_difference"]
        rows.append(
            [
                name,
                f"{entry['pixels']}, {entry['bytes'] / 1e6:.2f} MB",
                entry["draft_decoded_pixels"],
                mmm(ms["full decode"]),
                mmm(ms["draft decode"]),
                mmm(ms["full decode + preset"]),
                mmm(ms["draft decode + preset"]),
                mmm(entry["speedup_draft_vs_full"], f2) + "x",
                f"{diff['mean_abs']:.4f} / {diff['p99_abs']:.3f}",
            ]
        )
    parts = [
        TITLE,
        # The JPEG settings are bench/images.py photo_jpeg's (the run does not save them).
        "Generated photo-like JPEGs (`bench/images.py`: smooth light, mid-frequency detail, shapes, sensor "
        "noise; quality 90, 4:2:0) through the endpoint's own `decode_image` and `eval_transform` "
        f"(resize {result['resize_size']}, crop {result['image_size']}). *Full*: every pixel decoded, then "
        "the preset resizes. *Draft*: `decode_image(..., min_side=resize)` lets libjpeg decode at 1/2, 1/4 "
        "or 1/8 scale (DCT scaling) while the short side stays >= the resize size; this is what `input_fn` "
        f"does. {result['repeats']} interleaved repeats.",
        table(
            [
                "image",
                "size",
                "draft decodes at",
                "full decode ms",
                "draft decode ms",
                "full + preset ms",
                "draft + preset ms",
                "speed-up",
                "tensor diff mean / p99 (normalized units)",
            ],
            rows,
        ),
    ]
    images = result["images"]
    if "phone_draft_vs_small_full" in result and {"phone", "small"} <= images.keys():
        ratio = result["phone_draft_vs_small_full"]
        parts.append(
            f"With draft decoding a {megapixels(images['phone']['pixels']):.0f} MP phone photo costs "
            f"{mmm(ratio, f2)}x a {images['small']['pixels']} one (full decode "
            "of the small image as the reference). `tests/bench/test_draft_decode.py` checks that a draft "
            "decode gives the same top-1 and near-equal probabilities as a full decode through the same "
            "preset."
        )
    parts.append("![preprocessing](img/bench-preprocess.png)")
    return "\n\n".join(parts)
