"""## Multi-image requests and dynamic batching: whether the API takes several images, and TorchServe's
server-side batch."""

from __future__ import annotations

from typing import Any

from .. import cost, decisions
from .text import f1

TITLE = "## Multi-image requests and dynamic batching"


def multi_image_section(inference: dict[str, Any], arch: str, capacity: dict[str, Any] | None = None) -> str:
    decided = decisions.multi_image(inference, arch, capacity)
    if decided is None:
        return f"{TITLE}\n\nNot measured (the inference benchmark did not run)."
    layout_text = ""
    if decided.layout is not None:
        workers, threads = decided.layout
        layout_text = (
            f" For comparison, running {workers} single-image workers x {threads} thread(s) "
            f"instead of 1 x {decided.single_worker_threads} changes whole-request throughput by "
            f"{decided.layout_gain:.2f}x (capacity table above) without changing the API."
        )
    cpu = {
        True: "; on CPU the same cores are better used by one single-image worker per core",
        False: "; on CPU batching gains more per image here than more workers do, the one argument for it",
        None: "",
    }[decided.workers_beat_batching]
    b8 = decided.batch8_img_s
    size = decided.server_batch_size
    gpu = cost.GPU_REFERENCE
    return "\n\n".join(
        [
            TITLE,
            f"`{arch}` forward on this host, each batch size in its fastest fp32 layout: batch 1 "
            f"{decided.batch1_img_s:.1f} img/s ({decided.batch1_variant}), batch 8 "
            f"{f1(b8) if b8 else '?'} img/s ({decided.batch8_variant or '-'}), "
            f"{decided.batch_gain:.2f}x per image.{layout_text} Decision: "
            + ("**multi-image requests**" if decided.multi_image_requests else "**no multi-image requests**")
            + ". The API contract is one image per request; a batched request waits for all its "
            f"decodes and forwards before any answer returns{cpu}; and on a GPU the win comes from batching "
            "*across* callers, which TorchServe does in the server without any API change.",
            "The PyTorch inference DLC runs TorchServe, configured through the model's environment "
            "(sagemaker-pytorch-inference-toolkit, `ts_parameters`): `SAGEMAKER_TS_BATCH_SIZE` (largest "
            "server-side batch), `SAGEMAKER_TS_MAX_BATCH_DELAY` (how long the frontend waits to fill a "
            "batch, "
            "TorchServe's `maxBatchDelay`, ms), `SAGEMAKER_TS_MIN_WORKERS` / `SAGEMAKER_TS_MAX_WORKERS` "
            "(worker "
            "processes) and `SAGEMAKER_TS_RESPONSE_TIMEOUT` (seconds). Caveat, from the toolkit's source "
            "(aws/sagemaker-inference-toolkit, `transformer.py`, `Transformer.transform`): with "
            "`input_fn`/`predict_fn`/`output_fn` handlers it loops over the batch and runs the three "
            "functions "
            "one request at a time, reading the headers of `request_processor[0]` for every item. So "
            f"`SAGEMAKER_TS_BATCH_SIZE > {size}` with our handlers adds queueing delay without batching a "
            "single forward pass (and would apply the first request's `top_k` to all). Keep "
            f"`SAGEMAKER_TS_BATCH_SIZE={size}` "
            "(the default). Real dynamic batching needs a custom TorchServe handler that stacks the decoded "
            "images: worth building only for a GPU fleet at high load (NVIDIA's T4 table: "
            f"{gpu['batch8_img_per_s']:g} img/s at batch 8 vs {gpu['batch1_img_per_s']:g} at batch 1), with "
            "`SAGEMAKER_TS_BATCH_SIZE=8` and `SAGEMAKER_TS_MAX_BATCH_DELAY` of a few ms.",
        ]
    )
