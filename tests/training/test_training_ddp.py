"""The 2-process DDP run (gloo, CPU): it learns, logs parseable lines, writes metrics, curves and artifact.

Several assertions share the session's one run (``ddp_run`` in conftest).
"""

from __future__ import annotations

import json
import pickletools
import re
import sys
import zipfile

import pytest
import torch
from dist_worker import ORACLE_PREDICTIONS, ORACLE_TARGETS, oracle_dataset
from training_helpers import CLASSES, REPO, TRAIN_ARGS, run_command

from inference.architecture import build_model
from inference.model_config import ModelConfig
from training.artifact import artifact_files, load_artifact, package
from training.artifact import main as artifact_main
from training.checkpoint import load_checkpoint
from training.metrics import METRIC_DEFINITIONS

pytestmark = pytest.mark.slow
WORKER = str(REPO / "tests" / "training" / "dist_worker.py")


SHARDED_LENGTH = 21


@pytest.fixture(scope="module")
def collectives(tmp_path_factory) -> list[dict]:
    """dist_worker's "collectives" mode under a 2-process torchrun: each rank's results, in rank order."""
    out = tmp_path_factory.mktemp("collectives")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           WORKER, "collectives", str(out), str(SHARDED_LENGTH)]  # fmt: skip
    proc = run_command(cmd)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_ddp_run_learns_well_above_chance(ddp_run):
    epochs = ddp_run.metrics["epochs"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5, 6]
    chance = 1 / CLASSES
    assert epochs[-1]["val_acc1"] >= 2 * chance, epochs
    assert ddp_run.metrics["test_acc1"] >= 2 * chance
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    # Every validation image was counted once, across both ranks (10 per class).
    assert all(r["val_samples"] == 10 * CLASSES for r in epochs)
    assert ddp_run.metrics["test_samples"] == 10 * CLASSES
    assert ddp_run.metrics["world_size"] == 2 and ddp_run.metrics["complete"] is True


def test_each_epoch_logs_one_line_that_the_sagemaker_regexes_parse(ddp_run):
    lines = ddp_run.epoch_lines()
    assert len(lines) == 6, "one line per epoch, from rank 0 only"
    assert all("[rank 0]" in line for line in lines)
    last, record = lines[-1], ddp_run.metrics["epochs"][-1]
    expected = {
        "train:loss": record["train_loss"],
        "train:acc1": record["train_acc1"],
        "validation:loss": record["val_loss"],
        "validation:acc1": record["val_acc1"],
        "validation:acc5": record["val_acc5"],
        "train:images_per_sec": record["images_per_sec"],
    }
    for definition in METRIC_DEFINITIONS:
        if definition["Name"] in expected:
            match = re.search(definition["Regex"], last)
            assert match, (definition, last)
            assert float(match.group(1)) == pytest.approx(expected[definition["Name"]], rel=1e-5)
    test_line = next(line for line in ddp_run.output.splitlines() if "test_acc1=" in line)
    for name in ("test:acc1", "test:acc5"):
        regex = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == name)
        assert float(re.search(regex, test_line).group(1)) == pytest.approx(
            ddp_run.metrics[name.replace(":", "_")]
        )


def test_metrics_json_and_curves_png_are_written(ddp_run):
    png = ddp_run.model_dir / "training_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 10_000
    assert {"train_loss", "val_acc1", "val_acc5", "images_per_sec", "lr"} <= set(ddp_run.metrics["epochs"][0])
    assert ddp_run.metrics["epochs"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine decays to zero


def test_artifact_loads_weights_only_into_the_endpoint_builder(ddp_run, dataset):
    state = torch.load(ddp_run.model_dir / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state)
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in state.values())
    config = ModelConfig.load(ddp_run.model_dir)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.arch == "resnet18" and config.image_size == 40
    folders = sorted(p.name for p in (dataset / "train").iterdir())  # ImageFolder's index order
    assert config.class_names == tuple(f.split(".", 1)[1].replace("_", " ") for f in folders)
    model = build_model(config.arch, config.num_classes)
    model.load_state_dict(state, strict=True)
    # The same weights as the final checkpoint, i.e. the model that was evaluated.
    checkpoint = load_checkpoint(ddp_run.model_dir / "checkpoints" / "checkpoint.pt")
    assert checkpoint["epoch"] == 6 and checkpoint["step"] == 0
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(tensor, state[name]), name
    load_artifact(ddp_run.model_dir)  # the same check the packaging CLI runs
    assert sorted(p.name for p in (ddp_run.model_dir / "code").iterdir()) == sorted(
        ["inference.py", "preprocessing.py", "model_config.py", "architecture.py"]
    )
    assert config.metadata["val_acc1"] == ddp_run.metrics["epochs"][-1]["val_acc1"]


def test_weights_file_uses_only_what_torch_2_6_reads(ddp_run):
    """The endpoint's torch 2.6 reads zip format version 3 and, weights_only, only allowlisted globals."""
    with zipfile.ZipFile(ddp_run.model_dir / "model.pt") as archive:
        names = archive.namelist()
        assert archive.read(next(n for n in names if n.endswith("/version"))).strip() == b"3"
        pickle = archive.read(next(n for n in names if n.endswith("/data.pkl")))
    found = {arg for op, arg, _ in pickletools.genops(pickle) if op.name == "GLOBAL"}
    assert found <= {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage",
                     "torch LongStorage"}, found  # fmt: skip


def test_model_tar_gz_holds_only_the_artifact_and_is_reproducible(ddp_run, tmp_path):
    import tarfile

    first = package(ddp_run.model_dir, tmp_path / "a" / "model.tar.gz")
    second = package(ddp_run.model_dir, tmp_path / "b" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
    assert names == [p.as_posix() for p in artifact_files(ddp_run.model_dir)]
    assert "model.pt" in names and "model_config.json" in names and "code/inference.py" in names
    assert not any("checkpoint" in n or "metrics" in n for n in names)


def test_artifact_cli_packages_and_rejects_an_incomplete_dir(ddp_run, tmp_path):
    out = tmp_path / "model.tar.gz"
    ok = run_command(
        [sys.executable, "-m", "training.artifact", "--model-dir", str(ddp_run.model_dir), "--output",
         str(out)],
        timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0 and out.is_file(), ok.stderr
    with pytest.raises(SystemExit, match=r"has no model\.pt"):
        artifact_main(["--model-dir", str(tmp_path), "--check-only"])
    (tmp_path / "partial").mkdir()
    for name in ("model.pt", "model_config.json"):
        (tmp_path / "partial" / name).write_bytes((ddp_run.model_dir / name).read_bytes())
    with pytest.raises(
        SystemExit, match=r"code lacks architecture\.py, inference\.py, model_config\.py, preprocessing\.py$"
    ):
        artifact_main(["--model-dir", str(tmp_path / "partial"), "--check-only"])


def test_only_rank_0_writes_files(dataset, tmp_path):
    """Each rank gets its own dirs; after the run only rank 0's contain anything.

    Two epochs, the first with a frozen backbone: also exercises re-wrapping DDP when the set of
    trainable parameters changes."""
    args = ["--data-dir", str(dataset), *TRAIN_ARGS, "--epochs", "2", "--freeze-epochs", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           WORKER, "train-per-rank-dirs", str(tmp_path), *args]  # fmt: skip
    proc = run_command(cmd)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rank0 = {
        p.relative_to(tmp_path / "rank0").as_posix() for p in (tmp_path / "rank0").rglob("*") if p.is_file()
    }
    assert {"model/model.pt", "model/model_config.json", "model/code/inference.py", "output/metrics.json",
            "output/training_curves.png", "checkpoints/checkpoint.pt"} <= rank0  # fmt: skip
    rank1_files = (
        [p for p in (tmp_path / "rank1").rglob("*") if p.is_file()] if (tmp_path / "rank1").exists() else []
    )
    assert rank1_files == []


def test_googlenet_and_inception_train_under_ddp_and_load_into_the_endpoint_builder(tmp_path):
    """With their auxiliary heads, DDP failed at step 2 ("Expected to have finished reduction in the
    prior iteration"): the loop used only the main logits, so the aux heads never got gradients."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           WORKER, "aux-archs", str(tmp_path)]  # fmt: skip
    proc = run_command(cmd)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for arch in ("googlenet", "inception_v3"):
        assert json.loads((tmp_path / f"{arch}.json").read_text()) == {"steps": 2}
        state = torch.load(tmp_path / f"{arch}.pt", map_location="cpu", weights_only=True)
        build_model(arch, 3).load_state_dict(state, strict=True)  # what the endpoint's model_fn does


def test_accuracy_is_a_true_fraction_over_all_samples_of_all_ranks(collectives):
    """Uneven shards (6 + 5 samples) and short last batches (2 and 1): 5 of 11 correct is 5/11."""
    results = [r["evaluate"] for r in collectives]
    assert [r["local_samples"] for r in results] == [6, 5]
    correct = sum(p == t for p, t in zip(ORACLE_PREDICTIONS, ORACLE_TARGETS, strict=True))
    inputs, targets = oracle_dataset().tensors
    expected_loss = torch.nn.functional.cross_entropy(inputs.flatten(1), targets).item()
    for r in results:  # every rank reports the same, globally reduced numbers
        assert r["samples"] == 11
        assert r["acc1"] == correct / 11 == 5 / 11
        assert r["acc5"] == 1.0
        assert r["loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_training_shards_of_the_two_ranks_are_disjoint_and_reshuffled_each_epoch(collectives):
    length, results = SHARDED_LENGTH, collectives
    for epoch in ("0", "1"):
        shard0, shard1 = (r["epochs"][epoch] for r in results)
        assert len(shard0) == len(shard1) == length // 2  # equal step counts, as DDP needs
        assert not set(shard0) & set(shard1)
    assert results[0]["epochs"]["0"] != results[0]["epochs"]["1"]
