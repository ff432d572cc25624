"""training.metrics: counting without host round trips, and the curves PNG where matplotlib is missing."""

from __future__ import annotations

import logging
import sys

import torch
from torch.overrides import TorchFunctionMode

from training import metrics
from training.metrics import Accumulator

# Calls that make tensor data from host values; landing off the CPU, each is a host-to-device copy.
FROM_HOST = {"tensor", "as_tensor", "asarray", "new_tensor", "from_numpy"}
# Calls that bring a device tensor's values to the host.
TO_HOST = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"}


class HostTraffic(TorchFunctionMode):
    """Records every torch call that moves values between the host and the batch's device.

    On a GPU each one synchronises: a device-to-host read waits for the kernels that produce the value,
    and a pageable host-to-device copy ends in cudaStreamSynchronize (ATen's cuda/Copy.cu,
    memcpy_and_sync). The meta device stands in for the GPU here: it is not the CPU, and it computes
    nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", str(func))
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name in FROM_HOST and isinstance(result, torch.Tensor) and result.device.type != "cpu":
            self.calls.append(f"{name} -> {result.device}")
        moved = isinstance(result, torch.Tensor) and result.device.type != "cpu"
        if name in {"to", "copy_", "cuda"} and moved and any(t.device.type == "cpu" for t in tensors):
            self.calls.append(f"{name} cpu -> {result.device}")
        if name in TO_HOST and any(t.device.type != "cpu" for t in tensors):
            self.calls.append(f"{name} <- {tensors[0].device}")
        return result


def test_counting_a_training_step_moves_nothing_between_host_and_device():
    """train_one_epoch updates the meter every step; the host reads the sums once, in reduce()."""
    meter = Accumulator()
    logits = torch.empty(32, 133, device="meta")
    targets = torch.empty(32, dtype=torch.long, device="meta")
    loss = torch.empty((), device="meta")

    with HostTraffic() as traffic:
        for _ in range(3):
            meter.update(logits, targets, loss)

    assert traffic.calls == []
    assert meter.sums is not None and meter.sums.device.type == "meta" and meter.sums.shape == (4,)


def test_without_matplotlib_the_curves_are_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    """Bare PyTorch environments may lack matplotlib (the training DLC has it); it runs every epoch."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setattr(metrics, "_warned_no_matplotlib", False, raising=False)  # as in a new process
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_loss": 1.5, "train_acc1": 0.3, "val_acc1": 0.4, "val_acc5": 0.8},
        {"epoch": 2, "train_loss": 1.0, "val_loss": 1.2, "train_acc1": 0.6, "val_acc1": 0.5, "val_acc5": 0.9},
    ]

    with caplog.at_level(logging.WARNING, logger="training.metrics"):
        results = [metrics.plot_curves(tmp_path, history[: epoch + 1]) for epoch in range(2)]

    assert results == [None, None]
    assert not (tmp_path / "training_curves.png").exists()
    warnings = [r.getMessage() for r in caplog.records if r.name == "training.metrics"]
    assert len(warnings) == 1 and "matplotlib is not installed" in warnings[0]
