"""The ``export`` variant: one AOTInductor package that serves every batch size like the eager model."""

from __future__ import annotations

import torch

from bench import inference_speed


def test_an_aot_compiled_export_answers_like_the_eager_model_at_every_batch_size():
    torch.manual_seed(0)
    # A small conv net keeps the C++ compile short; the export path is the same as for a backbone.
    network = (
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 5),
        )
        .eval()
        .to(memory_format=torch.channels_last)
    )
    compiled = inference_speed.aot_compiled(network)
    with torch.inference_mode():
        for batch in (1, 8, inference_speed.MAX_EXPORTED_BATCH):
            x = inference_speed._input(batch, inference_speed.EXPORT)
            assert torch.allclose(compiled(x), network(x), atol=1e-5)
