"""What a checkpoint holds and how a run comes back from it (``checkpoint.capture_checkpoint`` and
``restore_checkpoint``), and which runs may resume it (``RESUME_KEYS``). No processes: several ranks are
played by one process with the gathering collective replaced."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from training_helpers import CPU, config

from training import checkpoint
from training.checkpoint import (
    FORMAT_VERSION,
    RESUME_KEYS,
    capture_checkpoint,
    load_checkpoint,
    restore_checkpoint,
    resume_problem,
    rng_state,
    save_checkpoint,
)
from training.config import ConfigError, TrainConfig
from training.distributed import DistContext
from training.keep import KeptWeights
from training.loop import TrainState, build_optimizer, build_scheduler, train_one_epoch
from training.metrics import Accumulator

# The format's keys: a resumed run and describe_checkpoint read these names, so a rename is a new
# FORMAT_VERSION, not a reshape.
CHECKPOINT_KEYS = {
    "model", "optimizer", "scaler", "epoch", "step", "history", "rng", "partial_train", "args",
    "run_started", "kept", "format_version",
}  # fmt: skip
BATCHES = 6


class NoStop:
    requested = False


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))  # buffers too


def make_state(model: nn.Module, cfg: TrainConfig, scaler: torch.amp.GradScaler | None = None) -> TrainState:
    optimizer = build_optimizer(model, cfg)
    return TrainState(
        model=model, wrapped=model, criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, BATCHES), scaler=scaler, amp_dtype=None,
    )  # fmt: skip


def untrained(cfg: TrainConfig) -> tuple[TrainState, KeptWeights]:
    state = make_state(make_model(0), cfg)
    return state, KeptWeights(cfg, state.model, CPU, BATCHES)


def capture_at(
    state: TrainState,
    kept: KeptWeights,
    cfg: TrainConfig,
    epoch: int,
    step: int,
    ctx: DistContext = CPU,
    meter: Accumulator | None = None,
) -> dict[str, Any] | None:
    return capture_checkpoint(
        state, kept, ctx, cfg, epoch=epoch, step=step, meter=meter, history=[], run_started=1.0
    )


def trained(tmp_path: Path) -> tuple[TrainConfig, TrainState, KeptWeights, Accumulator]:
    """A run one epoch in: SGD with momentum (optimizer state), a GradScaler, --keep ema's average."""
    cfg = config(tmp_path, "--channels-last", "false", "--keep", "ema", "--ema-steps", "1", "--lr", "0.1")
    model = make_model(0)
    state = make_state(model, cfg, torch.amp.GradScaler("cpu", init_scale=256.0))
    kept = KeptWeights(cfg, model, CPU, BATCHES)
    state.on_step = kept.on_step
    data = TensorDataset(torch.randn(BATCHES * 4, 4), torch.randint(0, 3, (BATCHES * 4,)))
    meter = Accumulator()
    model.train()
    train_one_epoch(state, DataLoader(data, batch_size=4), meter, CPU, cfg, NoStop())
    state.scaler.update(new_scale=8.0)  # not its initial scale: the restored one must come from the file
    return cfg, state, kept, meter


def test_a_checkpoint_brings_back_the_weights_optimizer_scaler_average_position_and_rngs(tmp_path):
    cfg, state, kept, meter = trained(tmp_path)
    history = [{"epoch": 1, "val_acc1": 0.5}]
    random.seed(3)
    torch.manual_seed(3)
    captured = capture_checkpoint(
        state, kept, CPU, cfg, epoch=1, step=4, meter=meter, history=history, run_started=1234.5
    )
    assert captured is not None
    path = save_checkpoint(captured, tmp_path / "ckpt")
    expected_draws = (random.random(), torch.rand(3))  # noqa: S311 - reproducibility, not secrecy
    saved = load_checkpoint(path)  # weights_only=True: the captured state is plain data
    assert set(saved) == CHECKPOINT_KEYS and saved["format_version"] == FORMAT_VERSION

    random.seed(99)  # another process's RNGs: the checkpoint's must replace them
    torch.manual_seed(99)
    model = make_model(1)  # other initial weights
    fresh = make_state(model, cfg, torch.amp.GradScaler("cpu", init_scale=256.0))
    start = restore_checkpoint(saved, model, fresh.optimizer, fresh.scaler, CPU)

    assert random.random() == expected_draws[0]  # noqa: S311
    assert torch.equal(torch.rand(3), expected_draws[1])
    for name, tensor in state.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    before, after = state.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for index, values in before["state"].items():
        assert torch.equal(after["state"][index]["momentum_buffer"], values["momentum_buffer"])
    assert fresh.scaler.get_scale() == 8.0
    assert (start.epoch, start.step, start.history, start.run_started) == (1, 4, history, 1234.5)
    assert torch.equal(start.partial_train, meter.sums)  # the interrupted epoch's sums so far

    resumed_kept = KeptWeights(cfg, model, CPU, BATCHES)
    resumed_kept.load_state_dict(start.kept)
    assert resumed_kept.steps == kept.steps == BATCHES
    for mine, theirs in zip(resumed_kept.average.parameters(), kept.average.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_an_epoch_boundary_checkpoint_has_no_partial_sums_and_no_scaler_without_amp(tmp_path):
    cfg = config(tmp_path, "--channels-last", "false")
    state, kept = untrained(cfg)
    captured = capture_at(state, kept, cfg, epoch=2, step=0)
    assert captured is not None
    assert captured["scaler"] == {} and captured["partial_train"] == [None] and captured["kept"] == {}
    start = restore_checkpoint(captured, make_model(1), build_optimizer(make_model(1), cfg), None, CPU)
    assert (start.epoch, start.step, start.partial_train, start.kept) == (2, 0, None, {})


def two_ranks(rank: int) -> DistContext:
    return replace(CPU, rank=rank, world_size=2)


def test_every_rank_gets_back_its_own_rng_state_and_partial_sums(tmp_path, monkeypatch):
    """Captured on rank 0 of two (the gather faked: rank 1's values are made up here); rank 1 must
    continue from its own RNG state and sums, not rank 0's."""
    cfg = config(tmp_path, "--channels-last", "false")
    torch.manual_seed(11)
    rank1_rng, rank1_draw = rng_state(), torch.rand(2)
    rank1_sums = torch.tensor([5.0, 4.0, 3.0, 8.0])
    theirs = {"rng": rank1_rng, "sums": rank1_sums}

    def gather_objects(ctx, obj):
        return [obj, theirs["rng"] if isinstance(obj, dict) else theirs["sums"]]

    monkeypatch.setattr(checkpoint.distributed, "gather_objects", gather_objects)
    state, kept = untrained(cfg)
    meter = Accumulator()
    meter.sums = torch.tensor([1.0, 1.0, 1.0, 2.0])
    assert capture_at(state, kept, cfg, 0, 3, two_ranks(1), meter) is None  # rank 0 writes it
    captured = capture_at(state, kept, cfg, 0, 3, two_ranks(0), meter)
    assert captured is not None and len(captured["rng"]) == len(captured["partial_train"]) == 2

    torch.manual_seed(0)
    model = make_model(1)
    start = restore_checkpoint(captured, model, build_optimizer(model, cfg), None, two_ranks(1))
    assert torch.equal(torch.rand(2), rank1_draw)
    assert torch.equal(start.partial_train, rank1_sums)


def test_a_mid_epoch_checkpoint_resumes_only_with_the_same_number_of_processes(tmp_path):
    cfg = config(tmp_path, "--channels-last", "false")
    state, kept = untrained(cfg)
    mid_epoch = capture_at(state, kept, cfg, epoch=1, step=3)
    model = make_model(1)
    with pytest.raises(ConfigError, match=r"^a mid-epoch checkpoint resumes only with the same number"):
        restore_checkpoint(mid_epoch, model, build_optimizer(model, cfg), None, two_ranks(0))

    # At an epoch boundary it resumes with two processes; the one-process RNG state is left alone.
    boundary = capture_at(state, kept, cfg, epoch=1, step=0)
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    start = restore_checkpoint(boundary, model, build_optimizer(model, cfg), None, two_ranks(1))
    assert torch.equal(torch.rand(2), expected)
    assert (start.epoch, start.step, start.partial_train) == (1, 0, None)
    assert torch.equal(model[0].weight, state.model[0].weight)


def test_a_checkpoint_s_own_settings_resume_it_and_a_changed_one_is_named(tmp_path):
    """The args a checkpoint carries (through the file: paths become strings) pass the check of the run
    that wrote them; each changed setting in RESUME_KEYS is named with its old and new value, and one
    outside it (paths, workers) is not a reason to refuse."""
    cfg = config(tmp_path, "--channels-last", "false")
    state, kept = untrained(cfg)
    args = load_checkpoint(save_checkpoint(capture_at(state, kept, cfg, 1, 0), tmp_path / "ckpt"))["args"]
    assert resume_problem(args, cfg, "ckpt") is None
    moved = config(tmp_path / "elsewhere", "--channels-last", "false", "--workers", "3")
    assert resume_problem(args, moved, "ckpt") is None

    other = config(tmp_path, "--channels-last", "false", "--arch", "resnet34", "--seed", "5")
    assert resume_problem(args, other, "host-a:ckpt") == (
        "host-a:ckpt is from a run with other settings (arch: 'resnet18' -> 'resnet34'; seed: 0 -> 5); "
        "pass --resume never to start over, or another --checkpoint-dir"
    )
    # A checkpoint without a setting (an older run's) is a different run, not a match by default.
    older = {k: v for k, v in args.items() if k != "keep"}
    assert "keep: None -> 'last'" in resume_problem(older, cfg, "ckpt")
    assert set(RESUME_KEYS) <= set(cfg.to_dict())  # a key the config lacks would fail every resume
