"""Everything a run reads from flags, torchrun and SageMaker ends up in one TrainConfig."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from training.checkpoint import check_resumable
from training.config import SAGEMAKER_CHECKPOINT_DIR, ConfigError, parse_config
from training.distributed import cpu_threads


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
    assert (cfg.weights, cfg.arch, cfg.epochs, cfg.resume, cfg.amp, cfg.keep) == (
        "imagenet",
        "resnet50",
        10,
        "auto",
        None,  # auto: on a GPU only (loop.amp_dtype_for)
        "last",
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


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--weight-decay", "0.05", "weight_decay: 0.0001 -> 0.05"),
        ("--momentum", "0.8", "momentum: 0.9 -> 0.8"),
        ("--label-smoothing", "0.1", "label_smoothing: 0.0 -> 0.1"),
        ("--min-crop-scale", "0.5", "min_crop_scale: 0.08 -> 0.5"),
        ("--weights", "none", "weights: 'imagenet' -> 'none'"),
        ("--amp", "true", "amp: None -> True"),
        ("--amp-dtype", "fp16", "amp_dtype: 'auto' -> 'fp16'"),
    ],
)
def test_a_setting_that_changes_the_rest_of_the_run_refuses_to_resume(
    tmp_path, data_dir, flag, value, message
):
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path)]
    saved = parse_config(base, {}).to_dict()
    with pytest.raises(
        ConfigError, match=rf"^ckpt is from a run with other settings \({re.escape(message)}\);"
    ) as error:
        check_resumable(saved, parse_config([*base, flag, value], {}), "ckpt")
    assert "\n" not in str(error.value)


def test_under_torchrun_an_explicit_resume_file_need_not_be_on_every_host(tmp_path, data_dir):
    """Only the ranks that have it read it (train.load_resume_state, which fails if none has it);
    requiring it on every rank stopped a two-host run on the host without the file."""
    argv = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--resume", "on-host-b.pt"]
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    assert parse_config(argv, env).resume == "on-host-b.pt"
    with pytest.raises(ConfigError, match="--resume must be"):  # one process: it can be told at once
        parse_config(argv, {})


def torchrun(world_size: int) -> dict[str, str]:
    return {"RANK": "0", "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}


@pytest.mark.parametrize(
    ("opt", "batch", "processes", "lr", "rule", "warmup"),
    [
        ("sgd", 32, 1, 0.1 * 32 / 256, "linear", 0),  # Goyal et al.: 0.1 per 256 images
        ("sgd", 32, 8, 0.1, "linear", 0),  # the reference batch itself
        ("sgd", 64, 8, 0.2, "linear", 2),  # scaled above the base: warm-up, min(5, 10 epochs // 5)
        ("adamw", 32, 1, 1e-3 * 32 / 256, "linear-capped", 0),
        ("adamw", 128, 8, 1e-3, "linear-capped", 0),  # never above AdamW's 1e-3: no warm-up either
    ],
)
def test_the_default_lr_follows_the_global_batch(tmp_path, data_dir, opt, batch, processes, lr, rule, warmup):
    argv = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--opt", opt]
    cfg = parse_config([*argv, "--batch-size", str(batch)], torchrun(processes))
    assert cfg.global_batch == batch * processes
    assert (cfg.lr, cfg.lr_rule, cfg.lr_warmup_epochs) == (pytest.approx(lr), rule, warmup)
    assert cfg.lr_reference_batch == 256
    assert cfg.base_lr == {"sgd": 0.1, "adamw": 1e-3}[opt]


def test_adamw_s_default_lr_is_a_fine_tuning_one_at_any_scale(tmp_path, data_dir):
    """SGD's 0.01 under AdamW wrecked a pretrained backbone (test loss ~8,900 after one epoch)."""
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--opt", "adamw"]
    for batch, processes in ((8, 1), (32, 1), (64, 2), (256, 16)):
        assert parse_config([*base, "--batch-size", str(batch)], torchrun(processes)).lr <= 1e-3


def test_an_explicit_lr_and_warm_up_are_used_as_given(tmp_path, data_dir):
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--batch-size", "64"]
    cfg = parse_config([*base, "--lr", "0.3"], torchrun(8))
    assert (cfg.lr, cfg.base_lr, cfg.lr_rule, cfg.lr_warmup_epochs) == (0.3, 0.3, "explicit", 0)
    cfg = parse_config([*base, "--lr-warmup-epochs", "0"], torchrun(8))  # no warm-up, asked for
    assert (cfg.lr, cfg.lr_warmup_epochs) == (pytest.approx(0.2), 0)


def test_the_lr_and_how_it_was_chosen_are_in_the_recorded_config(tmp_path, data_dir):
    """to_dict is what metrics.json's "config" and every checkpoint's "args" hold."""
    argv = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path), "--batch-size", "64"]
    recorded = json.loads(json.dumps(parse_config(argv, torchrun(8)).to_dict()))
    assert {k: recorded[k] for k in ("lr", "base_lr", "lr_reference_batch", "lr_rule", "global_batch")} == {
        "lr": pytest.approx(0.2),
        "base_lr": 0.1,
        "lr_reference_batch": 256,
        "lr_rule": "linear",
        "global_batch": 512,
    }
    assert recorded["lr_warmup_epochs"] == 2


def test_with_the_default_lr_another_number_of_processes_is_another_run(tmp_path, data_dir):
    """The check compares the lr the optimizer uses: 2 -> 4 processes doubles the default lr, so the
    checkpoint is refused, and an explicit --lr of the saved value resumes it."""
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path)]
    saved = parse_config(base, torchrun(2)).to_dict()
    with pytest.raises(ConfigError, match=r"lr: 0\.025 -> 0\.05"):
        check_resumable(saved, parse_config(base, torchrun(4)), "ckpt")
    check_resumable(saved, parse_config([*base, "--lr", str(saved["lr"])], torchrun(4)), "ckpt")


def test_keep_is_last_best_or_ema_and_a_bad_value_is_one_line(tmp_path, data_dir):
    base = ["--data-dir", str(data_dir), "--model-dir", str(tmp_path)]
    for keep in ("last", "best", "ema"):
        assert parse_config([*base, "--keep", keep], {}).keep == keep
    with pytest.raises(ConfigError, match=r"^--keep must be one of last, best, ema, got 'average'$"):
        parse_config([*base, "--keep", "average"], {})
    with pytest.raises(ConfigError, match="--ema-decay"):
        parse_config([*base, "--keep", "ema", "--ema-decay", "1"], {})


def test_a_large_gpu_host_gives_each_process_the_loader_workers_it_needs():
    """p4d.24xlarge: 96 vCPUs, 8 A100s. The benchmark's ~9 cores per A100 must fit; the old cap was 8."""
    from training.config import _default_workers

    assert _default_workers({"SM_NUM_CPUS": "96", "SM_NUM_GPUS": "8"}) == 11
    assert _default_workers({"SM_NUM_CPUS": "192", "SM_NUM_GPUS": "8"}) == 12  # capped
    assert _default_workers({"SM_NUM_CPUS": "4", "SM_NUM_GPUS": "1"}) == 3
