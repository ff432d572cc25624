"""bench.loader_speed on a tiny setting: the section's results have the shape the report reads, and the
cores column is the target rate over the measured per-worker rate (timings themselves are not checked)."""

from __future__ import annotations

import io
import math

from PIL import Image

from bench import loader_speed, report


def test_dog_images_like_photos_cost_what_dog_images_photos_cost():
    """dogImages' photos are about 500 x 375 and 130 KB; a smoother picture would decode faster."""
    data = loader_speed.dog_photo_jpeg(seed=0)
    assert Image.open(io.BytesIO(data)).size == (500, 375)
    assert 110_000 < len(data) < 150_000


def test_the_loader_section_runs_and_reports_every_measure():
    result = loader_speed.run(
        images=4, size=(80, 60), image_size=32, repeats=1, batch_size=2, steps=1, step_repeats=1,
        loader_workers=0, log=lambda _: None,
    )  # fmt: skip

    assert result["short_side"] == 37  # the evaluation resize for 32 px crops
    assert result["sets"]["original"]["pixels"] == "80x60"
    assert result["sets"]["prepared"]["pixels"] == "49x37"
    assert 0 < result["size_ratio_prepared"] < 1
    assert result["bytes_per_sample"] == {"float path": 4 * 3 * 32 * 32, "uint8 path": 3 * 32 * 32}
    for name in ("original", "prepared"):
        rates = result["per_worker"][name]["images_per_sec"]
        assert set(rates) == {"decode", "float path", "uint8 path"}
        for path in ("float path", "uint8 path"):
            expected = math.ceil(result["target"]["images_per_sec"] / rates[path]["median"])
            assert result["cores_needed"][f"{name}/{path}"] == expected
        assert set(result["loader_vs_step"]["images_per_sec"][name]) == {"data loader alone", "full step"}
    assert result["target"]["images_per_sec"] == 2470

    text = report.loader_section(result)
    assert text.startswith("## Training input pipeline per loader worker")
    assert "cores for 2,470 img/s (float / uint8)" in text
    assert "| prepared (49x37, " in text
    assert "12 KB per sample on the float path, 3 KB on the uint8 path" in text
    assert " UTC, load average " in text and " CPUs: shared cores make every rate lower" in text
    assert report.loader_section({"error": "RuntimeError: boom"}).endswith("`RuntimeError: boom`")
