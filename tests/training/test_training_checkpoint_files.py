"""The files training writes and reads: checkpoints and model.pt land whole and only under their own name,
the newest checkpoint any host holds is the one a run resumes, and torchvision-references checkpoints
work as --weights. No processes; the two-host resume itself is in test_training_multinode.py."""

from __future__ import annotations

import argparse
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from torchvision import models

from inference.model_config import ModelConfig
from training.artifact import write_artifact
from training.checkpoint import (
    RESUME_KEYS,
    choose_resume_source,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from training.config import ConfigError
from training.model import create_model

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fds through /proc")


def record_file_operations(monkeypatch, watched: Path) -> list[tuple]:
    """Every torch.save, os.fsync and os.replace from now on, each with what ``watched`` held at the time.
    The real functions still run."""
    events: list[tuple] = []
    real_save, real_fsync, real_replace = torch.save, os.fsync, os.replace

    def listing() -> list[str]:
        return sorted(p.name for p in watched.iterdir()) if watched.is_dir() else []

    def save(obj, f, *args, **kwargs):
        events.append(("save", Path(f), listing()))
        return real_save(obj, f, *args, **kwargs)

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")), listing()))
        return real_fsync(fd)

    def replace(src, dst):
        assert os.stat(src).st_dev == os.stat(Path(dst).parent).st_dev, "a rename across file systems"
        events.append(("replace", Path(src), Path(dst), listing()))
        return real_replace(src, dst)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@needs_proc
def test_a_checkpoint_is_written_outside_the_synced_dir_renamed_in_and_the_dir_fsynced(tmp_path, monkeypatch):
    """SageMaker mirrors /opt/ml/checkpoints to S3, deletions included: a temporary file in it would be
    uploaded, then deleted in S3, which the training role may not do. So nothing but checkpoint.pt ever
    appears there; the rename stays on one file system (atomic), and the directory entry is fsynced."""
    checkpoint_dir = tmp_path / "checkpoints"
    save_checkpoint({"epoch": 1, "step": 0}, checkpoint_dir)  # the second save replaces a checkpoint
    events = record_file_operations(monkeypatch, checkpoint_dir)
    path = save_checkpoint({"epoch": 2, "step": 0}, checkpoint_dir)

    assert [e[0] for e in events] == ["save", "fsync", "replace", "fsync"]
    (_, tmp, during_save), (_, fsynced_file, _), (_, src, dst, _), (_, fsynced_dir, after) = events
    assert tmp.parent != checkpoint_dir and fsynced_file == src == tmp
    assert tmp.parent.parent == checkpoint_dir.parent  # a sibling: the same file system
    assert dst == path == checkpoint_dir / "checkpoint.pt"
    assert fsynced_dir == checkpoint_dir  # after the rename, so the new name survives a crash
    assert during_save == after == ["checkpoint.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # the staging dir is gone too
    assert load_checkpoint(path)["epoch"] == 2


@needs_proc
def test_model_pt_is_written_the_same_way(tmp_path, monkeypatch):
    """Before, torch.save wrote model.pt in place: a kill mid-write left a torn file under the real name."""
    model_dir = tmp_path / "model"
    weights = {"fc.weight": torch.ones(2, 3)}
    config = ModelConfig("resnet18", ("a", "b"), 64, 73, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    events = record_file_operations(monkeypatch, model_dir)
    write_artifact(model_dir, weights, config)
    saves = [e for e in events if e[0] == "save"]
    assert len(saves) == 1 and saves[0][1].parent != model_dir
    assert ("fsync", saves[0][1]) in [e[:2] for e in events]
    assert [e[2] for e in events if e[0] == "replace"] == [model_dir / "model.pt"]
    assert ("fsync", model_dir) in [e[:2] for e in events]
    assert not any(name.startswith(".") for name in os.listdir(model_dir))
    assert torch.equal(
        torch.load(model_dir / "model.pt", weights_only=True)["fc.weight"], weights["fc.weight"]
    )


def test_where_no_sibling_dir_can_be_made_the_temporary_file_goes_inside_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    """E.g. a checkpoint dir whose parent is read-only: the save still works, atomically, and the log says
    why a synced dir may see a temporary file."""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name.endswith("-tmp"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with caplog.at_level(logging.WARNING, logger="training.checkpoint"):
        path = save_checkpoint({"epoch": 3, "step": 0}, tmp_path / "checkpoints")
    assert f"writing temporary files inside {path.parent}" in caplog.text
    assert load_checkpoint(path)["epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def report(host: str, epoch: int | None = None, step: int = 0, started: float = 100.0, **args) -> dict:
    """One rank's describe_checkpoint() answer: no checkpoint, or one of a run started at ``started``."""
    if epoch is None:
        return {"host": host, "path": None}
    settings = {"arch": "resnet50", "epochs": 10, "lr": 0.01, **args}
    return {"host": host, "path": f"/ckpt/{host}.pt", "run_started": started, "epoch": epoch, "step": step,
            "args": settings}  # fmt: skip


def test_the_newest_checkpoint_on_any_host_is_the_one_resumed():
    """Rank 0 (a replacement host that sorted first) has nothing; hosts b and c hold epoch 3, a stale
    copy on a holds epoch 2 step 5."""
    reports = [report("new"), report("a", 2, 5), report("b", 3), report("b", 3), report("c", 3)]
    assert choose_resume_source(reports, "auto", RESUME_KEYS) == 2


def test_a_run_started_over_outranks_an_older_run_that_got_further():
    """An old run's epoch 8 on one host, and the run started after it with --resume never at epoch 2."""
    reports = [report("a", 8, started=100.0), report("b", 2, started=200.0)]
    assert choose_resume_source(reports, "auto", RESUME_KEYS) == 1


def test_with_no_checkpoint_on_any_host_the_run_starts_from_scratch():
    assert choose_resume_source([report("a"), report("b")], "auto", RESUME_KEYS) is None


def test_an_explicit_resume_file_on_no_host_is_an_error_and_on_one_host_is_enough():
    with pytest.raises(ConfigError, match=r"^--resume ckpt\.pt: no host has this file$"):
        choose_resume_source([report("a"), report("b")], "ckpt.pt", RESUME_KEYS)
    assert choose_resume_source([report("a"), report("b", 4)], "ckpt.pt", RESUME_KEYS) == 1


def test_checkpoints_as_far_into_a_run_but_with_other_settings_stop_the_run():
    reports = [report("a", 3, lr=0.01), report("b", 3, lr=0.1)]
    with pytest.raises(ConfigError, match=r"same epoch and step disagree .*a:/ckpt/a\.pt.*b:/ckpt/b\.pt"):
        choose_resume_source(reports, "auto", RESUME_KEYS)
    # Settings outside RESUME_KEYS (paths, workers) may differ between hosts.
    assert (
        choose_resume_source([report("a", 3, workers=0), report("b", 3, workers=8)], "auto", RESUME_KEYS) == 0
    )


def test_an_unreadable_checkpoint_on_any_host_stops_the_run_rather_than_being_skipped(tmp_path):
    """It may be the newest; nothing can tell."""
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes(b"not a checkpoint")
    reports = [report("a", 3), describe_checkpoint(broken, "b")]
    with pytest.raises(ConfigError, match=rf"cannot read a checkpoint .*b:{broken}: "):
        choose_resume_source(reports, "auto", RESUME_KEYS)


def test_a_host_reports_its_checkpoint_s_run_and_progress_from_the_file(tmp_path):
    path = save_checkpoint(
        {"model": {"w": torch.zeros(1000)}, "epoch": 4, "step": 7, "run_started": 123.5, "args": {"lr": 0.1}},
        tmp_path,
    )
    assert describe_checkpoint(path, "host-a") == {
        "host": "host-a", "path": str(path), "run_started": 123.5, "epoch": 4, "step": 7, "args": {"lr": 0.1}
    }  # fmt: skip
    assert describe_checkpoint(tmp_path / "absent.pt", "host-a") == {
        "host": "host-a",
        "path": str(tmp_path / "absent.pt"),
    }
    assert describe_checkpoint(None, "host-a") == {"host": "host-a", "path": None}


def torchvision_reference_args() -> argparse.Namespace:
    """What references/classification/train.py saves as "args": its parsed options (defaults here) plus
    the fields utils.init_distributed_mode adds."""
    return argparse.Namespace(
        data_path="/datasets01/imagenet_full_size/061417/", model="resnet18", device="cuda", batch_size=32,
        epochs=90, workers=16, opt="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, norm_weight_decay=None,
        label_smoothing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, lr_scheduler="steplr", lr_warmup_epochs=0,
        lr_warmup_method="constant", lr_warmup_decay=0.01, lr_step_size=30, lr_gamma=0.1, print_freq=10,
        output_dir=".", resume="", start_epoch=0, cache_dataset=False, sync_bn=False, test_only=False,
        pretrained=False, auto_augment=None, random_erase=0.0, amp=False, world_size=8, dist_url="env://",
        model_ema=True, model_ema_steps=32, model_ema_decay=0.99998, use_deterministic_algorithms=False,
        interpolation="bilinear", val_resize_size=256, val_crop_size=224, train_crop_size=224,
        clip_grad_norm=None, weights=None, rank=0, gpu=0, distributed=True, dist_backend="nccl",
    )  # fmt: skip


def save_like_torchvision_references(path: Path, model: torch.nn.Module, **extra) -> None:
    """The checkpoint dict of references/classification/train.py's epoch loop, saved the way it saves it
    (utils.save_on_master is torch.save on rank 0)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    model_ema = torch.optim.swa_utils.AveragedModel(model)
    with torch.no_grad():
        for p in model_ema.parameters():
            p.mul_(0.5)  # so that taking "model_ema" instead of "model" would show
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "epoch": 89,
        "args": torchvision_reference_args(),
    }
    checkpoint["model_ema"] = model_ema.state_dict()
    torch.save({**checkpoint, **extra}, path)


def test_a_torchvision_references_checkpoint_initialises_the_backbone_from_its_model_entry(tmp_path):
    """Its "args" is an argparse.Namespace, which weights_only refused with UnpicklingError."""
    torch.manual_seed(3)
    imagenet = models.resnet18(weights=None)
    save_like_torchvision_references(tmp_path / "checkpoint.pth", imagenet)
    model = create_model("resnet18", 5, str(tmp_path / "checkpoint.pth"))
    assert torch.equal(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert model.fc.out_features == 5
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed for that load only


class NotAllowed:
    """A class no checkpoint of ours or torchvision's needs."""


def test_a_weights_file_with_any_other_class_is_still_refused(tmp_path):
    """The allowance is argparse.Namespace and nothing more: the refusal names the other class."""
    imagenet = models.resnet18(weights=None)
    save_like_torchvision_references(tmp_path / "checkpoint.pth", imagenet, extra=NotAllowed())
    with pytest.raises(pickle.UnpicklingError, match=r"Unsupported global: GLOBAL [\w.]*NotAllowed"):
        create_model("resnet18", 5, str(tmp_path / "checkpoint.pth"))
