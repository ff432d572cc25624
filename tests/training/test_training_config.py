"""Everything a run reads from flags, torchrun and SageMaker ends up in one TrainConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import SAGEMAKER_CHECKPOINT_DIR, ConfigError, parse_config
from training.distributed import cpu_threads
from training.train import check_resumable


@pytest.fixture
def data_dir(tmp_path) -> Path:
    for split in ("train", "valid"):
        (tmp_path / "data" / split / "001.Affenpinscher").mkdir(parents=True)
    return tmp_path / "data"


def sagemaker_env(tmp_path: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet50-11ad3fa6.pth").write_bytes(b"")
    return {
        "SM_MODEL_DIR": str(tmp_path / "opt-ml-model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "opt-ml-output-data"),
        "SM_CHANNEL_DATA": str(data_dir),
        "SM_CHANNEL_WEIGHTS": str(tmp_path / "weights"),
        "SM_NUM_CPUS": "4",
        "SM_NUM_GPUS": "1",
        "SM_HPS": json.dumps({"epochs": 12, "batch-size": 48, "lr": 0.003, "amp": True, "freeze_epochs": 2}),
        **extra,
    }


def test_sagemaker_paths_and_hyperparameters_come_from_the_environment(tmp_path, data_dir):
    cfg = parse_config([], sagemaker_env(tmp_path, data_dir))
    assert cfg.sagemaker
    assert cfg.data_dir == data_dir
    assert cfg.model_dir == tmp_path / "opt-ml-model"
    assert cfg.output_dir == tmp_path / "opt-ml-output-data"
    assert cfg.checkpoint_dir == Path(SAGEMAKER_CHECKPOINT_DIR)
    assert cfg.weights == str(tmp_path / "weights" / "resnet50-11ad3fa6.pth")  # network-isolated jobs
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.amp, cfg.freeze_epochs) == (12, 48, 0.003, True, 2)
    assert cfg.workers == 3  # 4 CPUs, 1 GPU process, one CPU left for the main process
    assert cfg.arch == "resnet50"


def test_command_line_arguments_override_sm_hps_as_sagemaker_passes_them(tmp_path, data_dir):
    # The toolkit also passes hyperparameters as arguments, booleans as the text True/False.
    cfg = parse_config(["--epochs", "3", "--amp", "False", "--channels-last", "True"],
                       sagemaker_env(tmp_path, data_dir))  # fmt: skip
    assert (cfg.epochs, cfg.amp, cfg.channels_last, cfg.batch_size) == (3, False, True, 48)


def test_unknown_or_malformed_hyperparameters_fail_with_their_name(tmp_path, data_dir):
    env = sagemaker_env(tmp_path, data_dir)
    with pytest.raises(ConfigError, match="unknown hyperparameter 'epoch'"):
        parse_config([], {**env, "SM_HPS": json.dumps({"epoch": 3})})
    with pytest.raises(ConfigError, match="SM_HPS is not JSON"):
        parse_config([], {**env, "SM_HPS": "{epochs: 3"})
    with pytest.raises(SystemExit):  # argparse: invalid int value
        parse_config([], {**env, "SM_HPS": json.dumps({"epochs": "many"})})


def test_local_defaults_and_torchrun_variables(tmp_path, data_dir):
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    cfg = parse_config(["--data-dir", str(data_dir), "--model-dir", str(tmp_path / "out")], env)
    assert not cfg.sagemaker
    assert (cfg.dist.rank, cfg.dist.world_size, cfg.dist.local_rank, cfg.dist.local_world_size) == (
        3,
        4,
        1,
        2,
    )
    assert cfg.dist.distributed and not cfg.dist.is_main
    assert cfg.output_dir == tmp_path / "out"
    assert cfg.checkpoint_dir == tmp_path / "out" / "checkpoints"
    assert (cfg.weights, cfg.arch, cfg.epochs, cfg.resume, cfg.amp) == (
        "imagenet",
        "resnet50",
        10,
        "auto",
        False,
    )
    none = parse_config(["--data-dir", str(data_dir), "--model-dir", "m", "--checkpoint-dir", "none"], {})
    assert none.checkpoint_dir is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--freeze-epochs", "11"], "--freeze-epochs"),
        (["--weights", "missing.pth"], "--weights must be 'imagenet', 'none' or an existing file"),
        (["--image-size", "8"], "--image-size"),
        (["--resume", "nope.pt"], "--resume"),
    ],
)
def test_invalid_values_are_one_clear_error(tmp_path, data_dir, argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(["--data-dir", str(data_dir), "--model-dir", str(tmp_path), *argv], {})


@pytest.mark.parametrize(
    ("arch", "size", "message"),
    [
        ("vit_b_16", 64, r"--image-size 64 does not work with --arch vit_b_16 \(224 does\): Wrong image"),
        ("maxvit_t", 256, r"--image-size 256 does not work with --arch maxvit_t \(224 does\)"),
        ("inception_v3", 40, r"--image-size 40 does not work with --arch inception_v3"),  # pooled to nothing
        ("resnet5O", 224, r"--arch must be a torchvision classification model name, got 'resnet5O'"),
    ],
)
def test_an_image_size_the_arch_cannot_take_is_a_config_error_not_a_crash_on_the_first_batch(
    tmp_path, data_dir, arch, size, message
):
    argv = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path)]
    argv += ["--arch", arch, "--image-size", str(size)]
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(argv, {})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("arch", "size"),
    [("vit_b_16", 224), ("maxvit_t", 224), ("resnet18", 40), ("inception_v3", 80), ("regnet_y_400mf", 64)],
)
def test_an_image_size_the_arch_takes_is_accepted(tmp_path, data_dir, arch, size):
    """(RegNets do not build on the meta device that the check runs on: not checked, accepted.)"""
    argv = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path)]
    argv += ["--arch", arch, "--image-size", str(size)]
    assert parse_config(argv, {}).image_size == size


def test_data_dir_must_be_an_image_folder_root(tmp_path):
    with pytest.raises(ConfigError, match="must contain train/ and valid/"):
        parse_config(["--data-dir", str(tmp_path), "--model-dir", str(tmp_path)], {})


def test_inconsistent_torchrun_variables_are_rejected(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="inconsistent torchrun"):
        parse_config(["--data-dir", str(data_dir), "--model-dir", "m"], {"RANK": "2", "WORLD_SIZE": "2"})


def test_cpu_threads_share_the_cores_between_local_processes():
    assert cpu_threads(3, 8) == 3  # explicit --threads wins
    assert cpu_threads(0, 1) >= 1
    assert cpu_threads(0, 10_000) == 1


def test_sagemaker_s_own_hyperparameters_are_not_options(tmp_path, data_dir):
    hps = {"epochs": 2, "sagemaker_program": "training/sagemaker_entry.py", "sagemaker_region": "eu-west-1"}
    env = {**sagemaker_env(tmp_path, data_dir), "SM_HPS": json.dumps(hps)}
    assert parse_config([], env).epochs == 2


def test_a_checkpoint_resumes_only_the_run_that_wrote_it(tmp_path, data_dir):
    cfg = parse_config(["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--epochs", "10"], {})
    check_resumable(cfg.to_dict(), cfg, "ckpt")  # same settings: fine
    changed = {**cfg.to_dict(), "epochs": 5, "arch": "resnet18", "workers": 0}  # workers may differ
    with pytest.raises(
        ConfigError, match=r"other settings \(arch: 'resnet18' -> 'resnet50'; epochs: 5 -> 10\)"
    ):
        check_resumable(changed, cfg, "ckpt")
