"""The training loop's parts without a training run: mixed precision per device, the LR schedule across a
resume, and how often the ranks agree on stopping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from training_helpers import CPU, config

from training import loop
from training.checkpoint import load_checkpoint, save_checkpoint
from training.loop import (
    STOP_POLL_STEPS,
    TrainState,
    amp_dtype_for,
    build_optimizer,
    build_scheduler,
    grad_scaler_for,
    train_one_epoch,
)
from training.metrics import Accumulator


def fake_gpu(monkeypatch, major: int, minor: int) -> None:
    """What torch.cuda reports for a GPU of this compute capability, on a machine without one. Creating
    a bf16 tensor works on every CUDA GPU (emulated below capability 8.0)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    properties = SimpleNamespace(major=major, minor=minor, name=f"sm_{major}{minor}")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: properties)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)


def test_amp_on_a_t4_is_fp16_with_a_grad_scaler(monkeypatch, tmp_path):
    """A T4 (g4dn, SageMaker's default here; compute capability 7.5) runs bf16 only emulated, slowly,
    and fp16 without loss scaling underflows: it must get fp16 and a GradScaler."""
    cfg = config(tmp_path, "--amp")
    fake_gpu(monkeypatch, 7, 5)
    cuda = torch.device("cuda", 0)
    dtype = amp_dtype_for(cfg, cuda)
    assert dtype == torch.float16
    assert isinstance(grad_scaler_for(dtype, cuda), torch.amp.GradScaler)


def test_amp_on_ampere_and_newer_and_on_cpus_is_bf16_without_a_scaler(monkeypatch, tmp_path):
    cfg, fp32 = config(tmp_path, "--amp"), config(tmp_path, "--amp", "false")
    fake_gpu(monkeypatch, 8, 0)  # A100, A10G (g5), H100 ...
    for device in (torch.device("cuda", 0), torch.device("cpu")):
        dtype = amp_dtype_for(cfg, device)
        assert dtype == torch.bfloat16 and grad_scaler_for(dtype, device) is None
        assert amp_dtype_for(fp32, device) is None  # --amp false


@pytest.mark.parametrize(("major", "minor", "dtype"), [(8, 0, torch.bfloat16), (7, 5, torch.float16)])
def test_amp_is_on_by_default_on_a_gpu_and_off_on_a_cpu(monkeypatch, tmp_path, major, minor, dtype):
    """Without --amp (auto) a GPU gets autocast, bf16 or, on a T4/V100, fp16 with a GradScaler; a CPU
    stays fp32. --amp false still turns it off on a GPU."""
    default, auto = config(tmp_path), config(tmp_path, "--amp", "auto")
    off = config(tmp_path, "--amp", "false")
    fake_gpu(monkeypatch, major, minor)
    cuda = torch.device("cuda", 0)
    assert amp_dtype_for(default, cuda) == amp_dtype_for(auto, cuda) == dtype
    assert (grad_scaler_for(dtype, cuda) is not None) == (dtype == torch.float16)
    assert amp_dtype_for(default, torch.device("cpu")) is None
    assert amp_dtype_for(off, cuda) is None


def _train_epochs(optimizer, scheduler, steps_per_epoch: int, epochs: int) -> list[float]:
    """Steps the schedule as train_one_epoch does; the LR at the end of each epoch (the logged one)."""
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            optimizer.step()
            scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("new_steps_per_epoch", [5, 20], ids=["twice-the-processes", "half-the-processes"])
def test_an_epoch_boundary_checkpoint_resumes_the_lr_schedule_with_another_number_of_processes(
    tmp_path, new_steps_per_epoch
):
    """After epoch 2 of 6 at 10 steps per epoch, resumed at 5 (twice the processes) or 20 (half): the
    LR at every later epoch end is the uninterrupted run's, down to the cosine's final 0."""
    cfg = config(tmp_path, "--epochs", "6", "--lr", "0.1", "--lr-warmup-epochs", "1")
    model = nn.Linear(3, 2)
    steps_per_epoch, epochs_done = 10, 2

    optimizer = build_optimizer(model, cfg)
    reference = _train_epochs(optimizer, build_scheduler(optimizer, cfg, steps_per_epoch), steps_per_epoch, 6)
    assert reference[-1] == 0.0

    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    _train_epochs(optimizer, scheduler, steps_per_epoch, epochs_done)
    path = save_checkpoint({"optimizer": optimizer.state_dict(), "epoch": epochs_done, "step": 0}, tmp_path)
    state = load_checkpoint(path)

    # What train.py does on resume: load the optimizer, then build the schedule at this run's position.
    optimizer = build_optimizer(model, cfg)
    optimizer.load_state_dict(state["optimizer"])
    resumed_scheduler = build_scheduler(
        optimizer, cfg, new_steps_per_epoch, state["epoch"] * new_steps_per_epoch + state["step"]
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(reference[epochs_done - 1], abs=1e-12)
    resumed = _train_epochs(optimizer, resumed_scheduler, new_steps_per_epoch, 6 - epochs_done)
    assert resumed == pytest.approx(reference[epochs_done:], abs=1e-12)
    assert resumed[-1] == 0.0

    # The bug this replaces: the saved scheduler's raw step count (20) read as this run's position
    # puts a 5-step run at epoch 4 of 6 and a 20-step run at epoch 1.
    optimizer = build_optimizer(model, cfg)
    optimizer.load_state_dict(state["optimizer"])
    stale = build_scheduler(optimizer, cfg, new_steps_per_epoch)
    stale.load_state_dict(scheduler.state_dict())
    wrong = _train_epochs(optimizer, stale, new_steps_per_epoch, 6 - epochs_done)
    assert wrong != pytest.approx(reference[epochs_done:], abs=1e-6)


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return self.linear(x)


def _epoch(tmp_path, monkeypatch, batches: int, sigterm_at_step: int | None) -> tuple[int, list[int]]:
    """One epoch of train_one_epoch over ``batches`` steps; SIGTERM's flag set during step
    ``sigterm_at_step`` (0-based). Returns the steps done and the steps before which it polled."""
    model = _Counting()
    polled: list[int] = []
    preemption = SimpleNamespace(requested=False)

    def any_rank(ctx, flag):  # the collective, recorded
        polled.append(model.steps)
        return flag

    def on_forward(module, args):
        if module.steps == sigterm_at_step:
            preemption.requested = True

    model.register_forward_pre_hook(on_forward)
    monkeypatch.setattr(loop.distributed, "any_rank", any_rank)
    cfg = config(tmp_path, "--channels-last", "false")
    data = TensorDataset(torch.randn(batches, 4), torch.randint(0, 3, (batches,)))
    optimizer = build_optimizer(model, cfg)
    state = TrainState(
        model=model, wrapped=model, criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, batches), scaler=None, amp_dtype=None,
    )  # fmt: skip
    steps, _ = train_one_epoch(state, DataLoader(data, batch_size=1), Accumulator(), CPU, cfg, preemption)
    return steps, polled


def test_ranks_agree_on_stopping_every_few_steps_not_every_step(tmp_path, monkeypatch):
    """The agreement is a collective the host waits for, which stalls the GPU: every STOP_POLL_STEPS
    steps, and before an epoch's last step (stopping there saves before the validation pass)."""
    n = STOP_POLL_STEPS
    batches = 2 * n + 4
    steps, polled = _epoch(tmp_path, monkeypatch, batches, sigterm_at_step=None)
    assert steps == batches
    assert polled == [0, n, 2 * n, batches - 1]


def test_sigterm_stops_the_epoch_at_the_next_poll(tmp_path, monkeypatch):
    n = STOP_POLL_STEPS
    batches = 2 * n + 4
    steps, polled = _epoch(tmp_path, monkeypatch, batches, sigterm_at_step=n + 1)
    assert steps == 2 * n and polled == [0, n, 2 * n]  # the steps up to the next poll finish, no more
    steps, _ = _epoch(tmp_path, monkeypatch, batches, sigterm_at_step=2 * n + 1)
    assert steps == batches - 1  # the epoch's last step is not started


def test_an_epoch_steps_the_wrapped_model_schedule_and_hook_of_its_train_state(tmp_path):
    """The steps run ``wrapped`` (DDP/compile around the model; the plain model's own forward would skip
    DDP's gradient all-reduce), and after every optimizer step the schedule moves and ``on_step`` runs
    (--keep ema's average): once per step, not per epoch."""
    cfg = config(tmp_path, "--channels-last", "false")
    model, wrapper = nn.Linear(4, 3), _Counting()
    wrapper.linear = model  # shares the model's parameters, as DDP's module does
    optimizer = build_optimizer(model, cfg)
    hook_calls: list[int] = []
    state = TrainState(
        model=model, wrapped=wrapper, criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, 5), scaler=None, amp_dtype=None,
        on_step=lambda: hook_calls.append(wrapper.steps),
    )  # fmt: skip
    before = model.weight.detach().clone()
    data = TensorDataset(torch.randn(5, 4), torch.randint(0, 3, (5,)))
    steps, images = train_one_epoch(
        state, DataLoader(data, batch_size=1), Accumulator(), CPU, cfg, SimpleNamespace(requested=False)
    )
    assert (steps, images) == (5, 5)
    assert wrapper.steps == 5 and hook_calls == [1, 2, 3, 4, 5]
    assert state.scheduler.last_epoch == 5
    assert not torch.equal(model.weight, before)  # the optimizer stepped the plain model's weights
