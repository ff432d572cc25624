"""Which weights the artifact gets (``--keep last|best|ema``), and fine-tuning with the default lr."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from training_helpers import CLASSES, CPU, config, run_command

from training import synthetic
from training.artifact import load_artifact
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import parse_config
from training.data import ShardSampler, load_data
from training.keep import IMAGENET_TRAIN_IMAGES, KeptWeights, ema_update_decay
from training.loop import evaluate


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def train_steps(model: nn.Module, kept: KeptWeights, steps: int, seed: int) -> None:
    """SGD steps on random data, calling the weight average as train_one_epoch does."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        x, y = torch.randn(8, 3, generator=generator), torch.randint(0, 2, (8,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if kept.on_step is not None:
            kept.on_step()


def test_on_imagenet_the_ema_decay_is_torchvisions_adjusted_one():
    """torchvision's recipe: 8 GPUs x 32, --model-ema-steps 32, 600 epochs; its alpha is
    (1 - decay) x world_size x batch_size x ema_steps / epochs."""
    steps_per_epoch = math.ceil(IMAGENET_TRAIN_IMAGES / (8 * 32))
    torchvision_alpha = (1 - 0.99998) * 8 * 32 * 32 / 600
    ours = ema_update_decay(0.99998, 600 * steps_per_epoch // 32)
    assert 1 - ours == pytest.approx(torchvision_alpha, rel=1e-3)


def test_on_a_small_dataset_the_ema_still_spans_the_end_of_the_run_not_the_initial_weights():
    """dogImages: 6,680 images, batch 32, 10 epochs, an update every 32 steps: 65 updates. With
    torchvision's formula as is, 0.998 per update, 88 % of the result would be the initial weights."""
    updates = 10 * math.ceil(6680 / 32) // 32
    torchvision_decay = 1 - (1 - 0.99998) * 1 * 32 * 32 / 10
    assert torchvision_decay**updates > 0.85  # the initial weights' share of the average at the end
    assert ema_update_decay(0.99998, updates) ** updates < 1e-10


def test_the_ema_copies_the_weights_during_warm_up_and_averages_after_it(tmp_path):
    # A decay whose average spans more than this short run's last update (the default's 4 % would not).
    argv = ["--keep", "ema", "--ema-decay", "0.9999999", "--ema-steps", "1", "--epochs", "4"]
    cfg = config(tmp_path, *argv, "--lr-warmup-epochs", "1")
    model = toy_model()
    kept = KeptWeights(cfg, model, CPU, steps_per_epoch=5)
    train_steps(model, kept, 5, seed=1)  # the warm-up epoch
    for average, weight in zip(
        kept.average.module.state_dict().values(), model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(average, weight, rtol=0, atol=0)
    train_steps(model, kept, 5, seed=2)
    assert not torch.equal(kept.average.module[0].weight, model[0].weight)


def test_an_ema_resumed_from_a_checkpoint_continues_exactly(tmp_path):
    cfg = config(tmp_path, "--keep", "ema", "--ema-steps", "2", "--epochs", "2")
    model = toy_model()
    reference = KeptWeights(cfg, model, CPU, steps_per_epoch=6)
    train_steps(model, reference, 6, seed=1)
    train_steps(model, reference, 6, seed=2)

    model = toy_model()
    first = KeptWeights(cfg, model, CPU, steps_per_epoch=6)
    train_steps(model, first, 6, seed=1)
    path = save_checkpoint({"model": model.state_dict(), "kept": first.state_dict()}, tmp_path / "ckpt")
    state = load_checkpoint(path)  # weights_only=True: the kept state is plain tensors and numbers
    model = toy_model()
    model.load_state_dict(state["model"])
    resumed = KeptWeights(cfg, model, CPU, steps_per_epoch=6)
    resumed.load_state_dict(state["kept"])
    train_steps(model, resumed, 6, seed=2)
    assert resumed.steps == reference.steps == 12
    for got, want in zip(
        resumed.average.state_dict().values(), reference.average.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_keep_best_puts_the_weights_of_the_first_epoch_with_the_highest_val_acc1_back(tmp_path):
    cfg = config(tmp_path, "--keep", "best", "--epochs", "4")
    model = toy_model()
    kept = KeptWeights(cfg, model, CPU, steps_per_epoch=3)
    history, weights = [], []
    for epoch, acc1 in enumerate((0.5, 0.8, 0.8, 0.6), start=1):
        train_steps(model, kept, 3, seed=epoch)
        history.append({"epoch": epoch, "val_loss": 1.0 / epoch, "val_acc1": acc1, "val_acc5": 1.0})
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        kept.end_epoch(history[-1])
    record = kept.apply(history, valid_loader=None, channels_last=False)
    assert record == {"keep": "best", "epoch": 2, "val_loss": 0.5, "val_acc1": 0.8, "val_acc5": 1.0}
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, weights[1][name], rtol=0, atol=0, msg=name)


# Runs of python -m training.train, one process: the settings of training_helpers.TRAIN_ARGS without
# its --lr (the default is under test here) and without its 6 epochs.
RUN_ARGS = (
    "--arch", "resnet18", "--batch-size", "8", "--image-size", "40", "--opt", "adamw",
    "--min-crop-scale", "0.5", "--workers", "0", "--seed", "7", "--progress", "false", "--threads", "2",
)  # fmt: skip


def train(dataset: Path, model_dir: Path, *args: str) -> dict:
    cmd = [sys.executable, "-m", "training.train", "--data-dir", str(dataset), "--model-dir", str(model_dir),
           *RUN_ARGS, *args]  # fmt: skip
    proc = run_command(cmd, timeout=360)  # a shared 2-core machine can take minutes
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads((model_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """64 training images (8 steps of 8), 16 validation images: --keep needs several epochs."""
    root = tmp_path_factory.mktemp("small")
    return synthetic.generate(root, classes=CLASSES, per_class=16, size=48, seed=2)


def validation_metrics(model: nn.Module, dataset: Path, tmp_path: Path) -> dict[str, float]:
    """The model on the validation set, evaluated as training does."""
    cfg = parse_config(["--data-dir", str(dataset), "--model-dir", str(tmp_path / "eval"), *RUN_ARGS], {})
    data = load_data(cfg, CPU)
    loader = data.loader(data.valid, ShardSampler(len(data.valid), 0, 1), cfg)
    return evaluate(model.to(memory_format=torch.channels_last), loader, CPU, channels_last=True)


@pytest.mark.slow
def test_fine_tuning_with_adamw_s_default_lr_keeps_what_the_weights_learned(ddp_run, dataset, tmp_path):
    """One epoch from a trained model's weights (the reference run's; the head is new) with --opt adamw
    and no --lr. SGD's 0.01, which AdamW used to inherit, took the validation loss to ~8 here (chance is
    ln 4 = 1.39; the weights' own model: ~0.4), as it took dogImages' test loss to ~8,900."""
    weights = str(ddp_run.model_dir / "model.pt")
    metrics = train(
        dataset, tmp_path / "model", "--weights", weights, "--epochs", "1", "--checkpoint-dir", "none"
    )
    recorded = metrics["config"]
    assert recorded["lr"] == pytest.approx(1e-3 * 8 / 256)  # AdamW's 1e-3 for 256 images, batch 8
    assert (recorded["lr_rule"], recorded["global_batch"], recorded["base_lr"]) == ("linear-capped", 8, 1e-3)
    assert (recorded["lr_reference_batch"], recorded["lr_warmup_epochs"]) == (256, 0)
    chance = math.log(CLASSES)
    for loss in (metrics["epochs"][0]["val_loss"], metrics["test_loss"]):
        assert math.isfinite(loss) and loss < 2 * chance


@pytest.mark.slow
def test_keep_best_writes_the_best_epochs_weights_not_the_last(ddp_run, dataset, tmp_path):
    """From the reference run's weights: epoch 1 trains the new head only, epoch 2 the whole network at an
    lr that wrecks the features (AdamW at 0.03), so epoch 1 is the best one."""
    weights = str(ddp_run.model_dir / "model.pt")
    metrics = train(dataset, tmp_path / "model", "--weights", weights, "--freeze-epochs", "1",
                    "--lr", "0.03", "--epochs", "2", "--keep", "best")  # fmt: skip
    first, last = metrics["epochs"]
    assert first["val_acc1"] > last["val_acc1"], metrics["epochs"]
    want = {k: first[k] for k in ("val_loss", "val_acc1", "val_acc5")}
    assert metrics["kept"] == {"keep": "best", "epoch": 1, **want}
    model, model_config = load_artifact(tmp_path / "model")
    assert (model_config.metadata["keep"], model_config.metadata["kept_epoch"]) == ("best", 1)
    assert model_config.metadata["val_acc1"] == first["val_acc1"]
    # The artifact's weights are epoch 1's: they give its recorded validation loss again ...
    assert validation_metrics(model, dataset, tmp_path)["loss"] == pytest.approx(first["val_loss"], rel=1e-4)
    # ... not the last ones (the checkpoint's model), and the checkpoint holds them for a resume.
    checkpoint = load_checkpoint(tmp_path / "model" / "checkpoints" / "checkpoint.pt")
    artifact = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert not torch.equal(artifact["conv1.weight"], checkpoint["model"]["conv1.weight"])
    assert checkpoint["kept"]["epoch"] == 1
    for name, tensor in checkpoint["kept"]["model"].items():
        torch.testing.assert_close(artifact[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_keep_ema_writes_the_average_and_its_own_validation_metrics(small_dataset, tmp_path):
    dataset = small_dataset
    metrics = train(dataset, tmp_path / "model", "--weights", "none", "--lr", "0.002", "--epochs", "2",
                    "--keep", "ema", "--ema-decay", "0.999999", "--ema-steps", "1")  # fmt: skip
    kept = metrics["kept"]
    assert (kept["keep"], kept["epoch"], kept["ema_steps"]) == ("ema", 2, 1)
    # 2 epochs x 8 steps, an update after each: 0.92 per update, an average over most of the run
    assert kept["ema_update_decay"] == pytest.approx(ema_update_decay(0.999999, 2 * 8))
    model, model_config = load_artifact(tmp_path / "model")
    assert (model_config.metadata["keep"], model_config.metadata["val_acc1"]) == ("ema", kept["val_acc1"])
    # The recorded metrics are the average's, not the last epoch's ...
    assert kept["val_loss"] != metrics["epochs"][-1]["val_loss"]
    assert validation_metrics(model, dataset, tmp_path)["loss"] == pytest.approx(kept["val_loss"], rel=1e-4)
    # ... and so are the weights: the checkpoint holds the last ones, and the average for a resume.
    checkpoint = load_checkpoint(tmp_path / "model" / "checkpoints" / "checkpoint.pt")
    artifact = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert not torch.equal(artifact["fc.weight"], checkpoint["model"]["fc.weight"])
    torch.testing.assert_close(artifact["fc.weight"], checkpoint["kept"]["average"]["module.fc.weight"])
