"""The input pipeline: uint8 out of the loader workers and normalized on the device, the endpoint's
decode rule (EXIF orientation) for dataset files, and ``training.prepare``'s resized copy."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision import transforms as v1

from inference.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    decode_image,
    decode_training_image,
    eval_transform,
    eval_transform_uint8,
)
from training import prepare, synthetic
from training.config import parse_config
from training.data import load_data, load_training_image, to_model_input, train_transform
from training.distributed import DistContext

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
EXIF_ORIENTATION = 0x0112
STD = torch.tensor(IMAGENET_STD).view(-1, 1, 1)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A synthetic-dataset picture (object, texture, noise) at ``width`` x ``height``."""
    return synthetic.render(seed % 5, max(width, height), np.random.default_rng(seed)).resize((width, height))


def upright_and_stored_rotated(width: int = 96, height: int = 64) -> tuple[Image.Image, bytes]:
    """An asymmetric upright picture, and a JPEG of it as a phone writes one (tests/serving/sample_images.py):
    pixels turned 90 degrees counter-clockwise, EXIF orientation 6 ("rotate 90 clockwise to view")."""
    y, x = np.mgrid[0:height, 0:width]
    gradient = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) % 256], axis=-1)
    upright = Image.fromarray(gradient.astype(np.uint8), "RGB")
    upright.paste((255, 255, 0), (0, 0, width // 4, height // 3))  # a corner that a rotation moves
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=95, exif=exif)
    return upright, buffer.getvalue()


def pixel_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def write_folder(
    root, splits=("train", "valid"), classes=("001.Akita", "002.Beagle"), per_class=2, size=(90, 60)
):
    for s, split in enumerate(splits):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for n in range(per_class):
                photo(*size, seed=100 * s + 10 * c + n).save(root / split / name / f"{n}.jpg", quality=92)
    return root


def cfg_for(data_dir, tmp_path, *argv: str):
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path / "model"), "--arch", "resnet18"]
    return parse_config([*base, "--image-size", "32", "--batch-size", "2", *argv], environ={})


# --- uint8 workers, normalization on the device -------------------------------------------------


def test_uint8_crops_normalized_on_the_device_match_the_float_preset_within_one_level():
    """The workers now crop and flip uint8 tensors and the device normalizes; before, the workers
    cropped the PIL image and sent ToTensor + Normalize floats. With the same seed the crops and flips
    are the same, and the only difference is the resize kernel's rounding: at most 1 of 255 levels per
    pixel, 0.1 on average. (A wrong mean, std, channel order, flip or crop is tens of levels off.)"""
    image = photo(500, 375)
    float_preset = v1.Compose(
        [
            v1.RandomResizedCrop(224, scale=(0.08, 1.0), antialias=True),
            v1.RandomHorizontalFlip(),
            v1.ToTensor(),
            v1.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    uint8_preset = train_transform(224, 0.08)
    before, after = [], []
    for seed in range(12):
        torch.manual_seed(seed)
        before.append(float_preset(image))
        torch.manual_seed(seed)
        pixels = uint8_preset(image)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 224, 224)
        after.append(pixels)
    batch = to_model_input(torch.stack(after), CPU.device, torch.channels_last)
    assert batch.dtype == torch.float32 and batch.is_contiguous(memory_format=torch.channels_last)
    levels = ((torch.stack(before) - batch) * STD * 255).abs()
    assert float(levels.max()) <= 1.0 + 1e-3
    assert float(levels.mean()) < 0.1


def test_the_evaluation_preset_split_at_the_device_is_bit_identical_to_the_endpoint_s():
    """Validation sends uint8 and normalizes on the device, the endpoint per image: the same numbers."""
    images = [photo(500, 375, seed=1), photo(300, 400, seed=2)]
    endpoint = eval_transform(224)
    batch = torch.stack([eval_transform_uint8(224)(image) for image in images])
    assert batch.dtype == torch.uint8
    assert torch.equal(to_model_input(batch, CPU.device), torch.stack([endpoint(image) for image in images]))


def test_a_float_batch_is_model_input_already_and_is_only_moved():
    batch = torch.randn(2, 3, 4, 4)
    assert torch.equal(to_model_input(batch, CPU.device), batch)


def test_the_loaders_send_uint8(tmp_path):
    """A quarter of float32's bytes through shared memory, pinned memory and the copy to the GPU."""
    data_dir = write_folder(tmp_path / "data")
    cfg = cfg_for(data_dir, tmp_path, "--workers", "0")
    data = load_data(cfg, CPU)
    data.train_sampler.set_epoch(0)
    images, _ = next(iter(data.train_loader(cfg)))
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)
    images, _ = next(iter(data.loader(data.valid, range(len(data.valid)), cfg)))
    assert images.dtype == torch.uint8


# --- the endpoint's decode rule for dataset files -----------------------------------------------


def test_an_exif_rotated_training_image_is_loaded_upright(tmp_path):
    """torchvision's ImageFolder loader ignores EXIF orientation: a phone photo stored sideways trained and
    validated sideways while the endpoint turned it upright. Now every split decodes as the endpoint does."""
    upright, stored = upright_and_stored_rotated()
    data_dir = write_folder(tmp_path / "data")
    path = data_dir / "valid" / "001.Akita" / "0.jpg"
    path.write_bytes(stored)
    assert datasets.folder.pil_loader(str(path)).size == (64, 96)  # the premise: sideways by default
    loaded = load_training_image(str(path))
    assert loaded.size == (96, 64)
    assert pixel_difference(loaded, upright) < 3  # JPEG noise; upside down or mirrored is 60-90 off
    assert pixel_difference(loaded, decode_image(stored)) == 0  # exactly the endpoint's decode
    data = load_data(cfg_for(data_dir, tmp_path), CPU)
    index = data.valid.samples.index((str(path), 0))
    assert torch.equal(data.valid[index][0], eval_transform_uint8(32)(decode_image(stored)))


def test_training_decodes_valid_files_the_endpoint_refuses(tmp_path):
    """The hostile-input limits guard the endpoint; a dataset's TIFF or huge EXIF block is just a file."""
    picture = photo(60, 40)
    tiff = tmp_path / "a.tiff"
    picture.save(tiff)
    with pytest.raises(ImageDecodeError):
        decode_image(tiff.read_bytes())
    assert decode_training_image(tiff).mode == "RGB"
    exif = Image.Exif()
    for tag in range(1000, 1400):  # 400 entries in the first directory: over the endpoint's 256
        exif[tag] = 1
    exif[EXIF_ORIENTATION] = 6
    crowded = tmp_path / "crowded.jpg"
    picture.transpose(Image.Transpose.ROTATE_90).save(crowded, quality=95, exif=exif)
    with pytest.raises(ImageDecodeError, match="EXIF"):
        decode_image(crowded.read_bytes())
    assert decode_training_image(crowded).size == (60, 40)  # and still upright


# --- training.prepare ---------------------------------------------------------------------------


def relative_files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_prepare_writes_an_upright_copy_with_the_short_side_given_and_skips_it_on_a_rerun(tmp_path):
    source = synthetic.generate(tmp_path / "in", classes=2, per_class=3, size=64)
    upright, stored = upright_and_stored_rotated(120, 80)
    (source / "train" / "001.Circle_solid_p0" / "phone.jpg").write_bytes(stored)
    photo(40, 30).save(source / "valid" / "002.Square_solid_p0" / "small.png")  # under the short side
    out = tmp_path / "out"
    lines: list[str] = []

    reports = prepare.prepare(source, out, short_side=48, log=lines.append)

    assert relative_files(out) == relative_files(source) - {"valid/002.Square_solid_p0/small.png"} | {
        "valid/002.Square_solid_p0/small.png.jpg"
    }
    for path in out.rglob("*.jpg"):
        with Image.open(path) as image:
            assert image.format == "JPEG" and "exif" not in image.info
            assert min(image.size) == (30 if path.name == "small.png.jpg" else 48)  # never upscaled
    phone = Image.open(out / "train" / "001.Circle_solid_p0" / "phone.jpg").convert("RGB")
    assert phone.size == (72, 48)  # landscape: the orientation is in the pixels now
    assert pixel_difference(phone, upright.resize((72, 48), Image.Resampling.BILINEAR)) < 4
    assert {split: r.written for split, r in reports.items()} == {"train": 7, "valid": 5, "test": 4}
    assert lines[0].startswith("train: 7 images: 7 written, 0 up to date, 0 failed; ")
    assert load_data(cfg_for(out, tmp_path), CPU).class_names == ("Circle solid p0", "Square solid p0")

    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    again = prepare.prepare(source, out, short_side=48, log=lines.append)
    assert all(r.written == 0 and r.up_to_date == r.images for r in again.values())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == written

    other = prepare.prepare(source, out, short_side=40, log=lines.append)  # other settings: all stale
    assert all(r.written == r.images for r in other.values())
    with Image.open(out / "train" / "001.Circle_solid_p0" / "phone.jpg") as image:
        assert image.size == (60, 40)


def test_prepare_names_what_is_wrong_in_one_line(tmp_path, capsys):
    def fails(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            prepare.main(["--out", str(tmp_path / "out"), "--short-side", "64", *argv])
        return str(exit_info.value)

    assert fails("--data-dir", str(tmp_path / "missing")) == (
        f"training.prepare: --data-dir {tmp_path / 'missing'} is not a directory"
    )
    (tmp_path / "flat").mkdir()
    assert "has no train/ or valid/: expected an ImageFolder" in fails("--data-dir", str(tmp_path / "flat"))
    source = write_folder(tmp_path / "data")
    assert "inside --data-dir" in fails("--data-dir", str(source), "--out", str(source / "small"))
    (source / "train" / "001.Akita" / "broken.jpg").write_bytes(b"not an image")
    assert fails("--data-dir", str(source), "--workers", "1") == "1"  # the exit status, after the others
    output = capsys.readouterr()
    assert "failed: " in output.out and "broken.jpg" in output.out
    assert "1 image(s) could not be decoded" in output.err
    assert (tmp_path / "out" / "train" / "001.Akita" / "0.jpg").is_file()
