"""JPEG draft decoding gives the model what a full decode gives it, for a 12-megapixel phone photo.

The endpoint decodes with ``decode_image(..., min_side=resize_size)`` (DCT-scaled: a 4032x3024 JPEG
is decoded at 1/8 scale) and the benchmark's baseline decodes every pixel. Both go through the same
evaluation preset; the input tensors, and the predictions of two models on them, must agree.
"""

from __future__ import annotations

import pytest
import torch
from torchvision import models

from bench.images import PHONE_SIZE, SMALL_SIZE, photo_jpeg
from bench.preprocess_speed import tensor_difference, to_tensor
from inference.preprocessing import decode_image, resize_size_for

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def phone_photos() -> dict[int, bytes]:
    return {seed: photo_jpeg(PHONE_SIZE, seed=seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def tensors(phone_photos) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    return {
        seed: (to_tensor(data, draft=False), to_tensor(data, draft=True))
        for seed, data in phone_photos.items()
    }


class Probe(torch.nn.Module):
    """A classifier that reacts to content at 16-pixel scale: a fixed random linear map of 14x14 means.

    Random-weight CNNs tend to predict one class whatever the input, which would make "same top-1"
    vacuous; this one's argmax moves with the picture (checked below), so agreement means something.
    """

    def __init__(self, classes: int = 20) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(classes, 3 * 14 * 14, generator=generator) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 14).flatten(1) @ self.weight.T


def _probabilities(model: torch.nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(tensor.unsqueeze(0)).softmax(dim=1)[0]


def test_phone_photo_is_realistic_and_draft_decodes_at_one_eighth(phone_photos):
    data = phone_photos[0]
    assert data[:3] == b"\xff\xd8\xff"
    assert 1_000_000 < len(data) < 4_000_000  # a 12 MP phone JPEG at quality ~90 is a few MB
    full = decode_image(data)
    draft = decode_image(data, min_side=resize_size_for(224))
    assert full.size == PHONE_SIZE
    assert draft.size == (PHONE_SIZE[0] // 8, PHONE_SIZE[1] // 8)
    assert min(draft.size) >= resize_size_for(224)


def test_draft_and_full_decode_give_nearly_the_same_model_input(tensors):
    for full, draft in tensors.values():
        assert full.shape == draft.shape == (3, 224, 224)
        diff = (full - draft).abs()
        # Normalized units (1.0 = one ImageNet std, about 0.23 of the [0, 1] range).
        assert diff.mean().item() < 0.02
        assert diff.quantile(0.99).item() < 0.15


def test_draft_decode_gives_the_same_top1_and_near_equal_probabilities(tensors):
    torch.manual_seed(0)
    probe = Probe().eval()
    cnn = models.resnet18(num_classes=20).eval()
    probe_top1 = set()
    for full, draft in tensors.values():
        for model in (probe, cnn):
            p_full, p_draft = _probabilities(model, full), _probabilities(model, draft)
            assert p_full.argmax().item() == p_draft.argmax().item()
            assert (p_full - p_draft).abs().max().item() < 0.02
        probe_top1.add(_probabilities(probe, full).argmax().item())
    assert len(probe_top1) > 1, "the probe must be content-sensitive for the agreement to mean anything"


def test_small_images_are_not_draft_scaled():
    data = photo_jpeg(SMALL_SIZE, seed=1)
    assert decode_image(data, min_side=resize_size_for(224)).size == SMALL_SIZE
    assert tensor_difference(data)["max_abs"] == 0.0


def test_photo_jpeg_is_deterministic():
    assert photo_jpeg((320, 240), seed=5) == photo_jpeg((320, 240), seed=5)
    assert photo_jpeg((320, 240), seed=5) != photo_jpeg((320, 240), seed=6)
