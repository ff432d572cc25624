"""Every input of a training run, read in one place: CLI flags, torchrun's and SageMaker's environment.

Precedence, lowest first: built-in defaults, SageMaker's ``SM_*`` paths, SageMaker hyperparameters
(``SM_HPS``), then command-line flags. Nothing else in ``training/`` reads ``os.environ`` or
``sys.argv``; the rest of the code only sees the frozen :class:`TrainConfig`.

SageMaker facts this module relies on (sagemaker-training-toolkit, ``environment.py``):
``SM_MODEL_DIR`` is ``/opt/ml/model`` (tarred into ``model.tar.gz`` after the job), ``SM_OUTPUT_DATA_DIR``
is ``/opt/ml/output/data`` (``output.tar.gz``), ``SM_CHANNEL_<NAME>`` is each input channel's local path,
``SM_HPS`` the hyperparameters as a JSON object (they also arrive as ``--key value`` arguments, where a
boolean is the text ``True``/``False``), and checkpoints under ``/opt/ml/checkpoints`` are synced with
the job's ``checkpoint_s3_uri`` both ways, which is what makes spot restarts resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torchvision import models

from .model import REFERENCE_IMAGE_SIZE, image_size_error

SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
# Channel names that launch.py gives the training job; SM_CHANNEL_DATA holds train/ valid/ test/.
DATA_CHANNEL = "data"
WEIGHTS_CHANNEL = "weights"
WEIGHTS_CHOICES = ("imagenet", "none")
AMP_CHOICES = ("auto", "bf16", "fp16")
KEEP_CHOICES = ("last", "best", "ema")

# The default learning rate follows the global batch (batch size x processes) by the linear scaling rule
# of Goyal et al. 2017, "Accurate, Large Minibatch SGD" (section 2.1): lr = base x global batch / 256.
# SGD's base is theirs and torchvision's references/classification default (--lr 0.1 for 8 GPUs x 32).
# AdamW's is PyTorch's own default (torch.optim.AdamW lr=1e-3); Adam divides each step by the gradient's
# RMS, so the rule's argument (k steps of batch n ~ one step of batch kn at k times the lr) does not carry
# over to it, and its default is only ever scaled down: at most 1e-3, which keeps a fine-tune's
# pretrained features (SGD's 0.01 with AdamW wrecked them: test loss ~8,900 after one epoch).
LR_REFERENCE_BATCH = 256
BASE_LR = {"sgd": 0.1, "adamw": 1e-3}
# Goyal et al. (section 2.2) warm up over 5 epochs of 90 where the scaled lr is larger than the base;
# a fine-tune is shorter, so at most a fifth of it warms up.
MAX_AUTO_WARMUP_EPOCHS = 5


class ConfigError(ValueError):
    """A bad flag, hyperparameter or environment value; the message names it."""


def parse_bool(value: str | bool) -> bool:
    """``true``/``1``/``yes`` and their negatives; SageMaker passes booleans as ``True``/``False``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def parse_amp(value: str | bool) -> bool | None:
    """``auto`` (None: on where the device is a GPU) or a boolean."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return parse_bool(value)


@dataclass(frozen=True)
class LearningRate:
    lr: float
    base_lr: float
    rule: str
    warmup_epochs: int


def learning_rate(
    opt: str, lr: float | None, global_batch: int, epochs: int, warmup_epochs: int | None
) -> LearningRate:
    """The peak lr and warm-up for ``--lr``/``--lr-warmup-epochs`` as given (None: not given).

    An explicit lr is the user's for this global batch and is not scaled: scaling it too would make the
    same flag mean another lr on another number of GPUs, and a resume there would silently change it.
    """
    if lr is not None:
        return LearningRate(lr, lr, "explicit", warmup_epochs or 0)
    base = BASE_LR[opt]
    scaled = base * global_batch / LR_REFERENCE_BATCH
    rule = "linear"
    if opt == "adamw":
        scaled, rule = min(base, scaled), "linear-capped"
    if warmup_epochs is None:
        # Goyal et al.: a large scaled lr at the start, on weights not yet adapted, diverges.
        warmup_epochs = min(MAX_AUTO_WARMUP_EPOCHS, epochs // 5) if scaled > base else 0
    return LearningRate(scaled, base, rule, warmup_epochs)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job, from torchrun's variables (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path | None
    resume: str  # "auto" (latest checkpoint in checkpoint_dir, if any), "never", or a checkpoint path
    arch: str
    weights: str  # "imagenet", "none" or a path to a state_dict file
    epochs: int
    freeze_epochs: int
    batch_size: int  # per process, as in torchvision's references
    lr: float  # the peak lr the optimizer uses, for the global batch
    base_lr: float  # the lr for LR_REFERENCE_BATCH images that lr was scaled from (explicit --lr: lr)
    lr_reference_batch: int
    lr_rule: str  # "linear", "linear-capped" (never above base_lr) or "explicit" (--lr as given)
    global_batch: int  # batch_size x processes
    momentum: float
    weight_decay: float
    opt: str
    label_smoothing: float
    lr_warmup_epochs: int  # as given, or the default for the lr (see learning_rate)
    keep: str  # which weights the artifact gets: KEEP_CHOICES
    ema_decay: float
    ema_steps: int
    image_size: int
    min_crop_scale: float
    seed: int
    amp: bool | None  # None: on where the device is a GPU (loop.amp_dtype_for)
    amp_dtype: str
    workers: int
    threads: int
    channels_last: bool
    compile: bool
    progress: bool | None  # None: a progress bar when stderr is a terminal
    dist: DistEnv
    sagemaker: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings (stored in checkpoints and metrics.json)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data


def dist_env(environ: Mapping[str, str]) -> DistEnv:
    """torchrun (and the SageMaker ``torch_distributed`` launcher, which runs torchrun) set these."""
    try:
        env = DistEnv(
            rank=int(environ.get("RANK", 0)),
            world_size=int(environ.get("WORLD_SIZE", 1)),
            local_rank=int(environ.get("LOCAL_RANK", 0)),
            local_world_size=int(environ.get("LOCAL_WORLD_SIZE", 1)),
        )
    except ValueError as exc:
        raise ConfigError(f"torchrun variable is not an integer: {exc}") from None
    if not 0 <= env.rank < env.world_size or not 0 <= env.local_rank < env.local_world_size:
        raise ConfigError(f"inconsistent torchrun variables: {env}")
    return env


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    sm_data = environ.get(f"SM_CHANNEL_{DATA_CHANNEL.upper()}") or environ.get("SM_CHANNEL_TRAINING")
    sm_weights_dir = environ.get(f"SM_CHANNEL_{WEIGHTS_CHANNEL.upper()}")
    on_sagemaker = "SM_MODEL_DIR" in environ

    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Fine-tune a torchvision classifier on an ImageFolder dataset (one process or torchrun).",
    )
    g = p.add_argument_group("paths")
    g.add_argument(
        "--data-dir",
        default=sm_data,
        required=sm_data is None,
        help="ImageFolder root with train/ valid/ [test/] (SageMaker: SM_CHANNEL_DATA)",
    )
    g.add_argument(
        "--model-dir",
        default=environ.get("SM_MODEL_DIR"),
        required="SM_MODEL_DIR" not in environ,
        help="where the deployable artifact goes (SageMaker: SM_MODEL_DIR)",
    )
    g.add_argument(
        "--output-dir",
        default=environ.get("SM_OUTPUT_DATA_DIR"),
        help="metrics.json and training curves (default: the model dir; SageMaker: SM_OUTPUT_DATA_DIR)",
    )
    g.add_argument(
        "--checkpoint-dir",
        default=SAGEMAKER_CHECKPOINT_DIR if on_sagemaker else None,
        help="checkpoint every epoch and on SIGTERM (default: MODEL_DIR/checkpoints; "
        f"SageMaker: {SAGEMAKER_CHECKPOINT_DIR}); 'none' disables checkpoints",
    )
    g.add_argument(
        "--resume",
        default="auto",
        help="'auto': continue from the checkpoint dir's checkpoint if there is one; "
        "'never': start over; or a checkpoint file",
    )

    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet50", help="any torchvision classification model name")
    g.add_argument(
        "--weights",
        default=_default_weights(sm_weights_dir),
        help="'imagenet' (torchvision's default weights for the arch), 'none', or a local "
        "state_dict file of the ImageNet model (SageMaker: the file in the 'weights' channel)",
    )
    g.add_argument(
        "--freeze-epochs",
        type=int,
        default=0,
        help="train only the new head for this many epochs before unfreezing the backbone",
    )

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--batch-size", type=int, default=32, help="images per process per step")
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate for the global batch, used as given; default: the optimizer's base "
        f"({', '.join(f'{k} {v:g}' for k, v in BASE_LR.items())}) x global batch / {LR_REFERENCE_BATCH}, "
        "AdamW's at most its base",
    )
    g.add_argument("--opt", choices=("sgd", "adamw"), default="sgd")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument(
        "--lr-warmup-epochs",
        type=int,
        default=None,
        help="linear warm-up, then cosine decay; default: 0, or where the default lr is scaled above "
        f"its base, min({MAX_AUTO_WARMUP_EPOCHS}, epochs // 5)",
    )
    g.add_argument("--image-size", type=int, default=224, help="training crop and evaluation crop side")
    g.add_argument(
        "--min-crop-scale",
        type=float,
        default=0.08,
        help="RandomResizedCrop's smallest crop, as a fraction of the image area",
    )
    g.add_argument("--seed", type=int, default=0, help="same seed, same data order, same result")

    g = p.add_argument_group("artifact")
    g.add_argument(
        "--keep",
        default="last",
        help="weights the artifact gets: 'last' epoch's, 'best' (the epoch with the highest val_acc1) "
        "or 'ema' (exponential moving average of the weights)",
    )
    g.add_argument(
        "--ema-decay",
        type=float,
        default=0.99998,
        help="--keep ema: torchvision's --model-ema-decay, for ImageNet-1k's size; rescaled to this "
        "run's number of updates (training.keep.ema_update_decay)",
    )
    g.add_argument("--ema-steps", type=int, default=32, help="--keep ema: optimizer steps per EMA update")

    g = p.add_argument_group("speed")
    g.add_argument(
        "--amp",
        type=parse_amp,
        nargs="?",
        const=True,
        default=None,
        help="mixed precision: bf16 where supported (CPU, Ampere+), else fp16 with GradScaler; "
        "default 'auto': on a GPU only",
    )
    g.add_argument("--amp-dtype", choices=AMP_CHOICES, default="auto")
    g.add_argument(
        "--workers",
        type=int,
        default=_default_workers(environ),
        help="DataLoader worker processes per training process",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op CPU threads per process; 0: the CPUs this process may use / local processes",
    )
    g.add_argument("--channels-last", type=parse_bool, nargs="?", const=True, default=True)
    g.add_argument("--compile", type=parse_bool, nargs="?", const=True, default=False, help="torch.compile")
    g.add_argument(
        "--progress",
        type=parse_bool,
        nargs="?",
        const=True,
        default=None,
        help="progress bar (default: only when stderr is a terminal)",
    )
    return p


def _default_weights(weights_dir: str | None) -> str:
    """In a network-isolated job the ImageNet weights come as the only file of the 'weights' channel."""
    if not weights_dir:
        return "imagenet"
    files = (
        sorted(f for f in Path(weights_dir).iterdir() if f.is_file()) if Path(weights_dir).is_dir() else []
    )
    if len(files) != 1:
        raise ConfigError(
            f"SM_CHANNEL_{WEIGHTS_CHANNEL.upper()} must hold exactly one weights file, found {len(files)}"
        )
    return str(files[0])


# A cap on loader workers per GPU process: enough for the measured need of a large GPU (docs/benchmarks.md,
# training loader: ~9 cores per A100 at 2,470 img/s on dogImages-sized JPEGs with the uint8 path, 12 with
# the float one; a p4d.24xlarge has 12 vCPUs per A100), and a bound on the memory the workers' copies take.
MAX_DEFAULT_WORKERS = 12


def _default_workers(environ: Mapping[str, str]) -> int:
    """SageMaker tells us the host's CPUs and GPUs: give each GPU process its share, leaving one CPU."""
    cpus = int(environ.get("SM_NUM_CPUS", 0))
    if cpus:
        processes = max(1, int(environ.get("SM_NUM_GPUS", 0)) or 1)
        return max(1, min(MAX_DEFAULT_WORKERS, (cpus - 1) // processes))
    return 4


def hyperparameter_args(parser: argparse.ArgumentParser, sm_hps: str | None) -> list[str]:
    """``SM_HPS`` ({"batch-size": 64, "amp": true}) as command-line tokens for ``parser``.

    Keys may use dashes or underscores. An unknown key is an error, not a silently ignored typo.
    """
    if not sm_hps:
        return []
    try:
        hps = json.loads(sm_hps)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"SM_HPS is not JSON: {exc}") from None
    if not isinstance(hps, dict):
        raise ConfigError("SM_HPS must be a JSON object")
    known = {opt for action in parser._actions for opt in action.option_strings}
    tokens: list[str] = []
    for key, value in hps.items():
        if str(key).startswith("sagemaker_"):
            continue  # the SDK's own (sagemaker_program, ...), should the toolkit pass any through
        flag = "--" + str(key).replace("_", "-")
        if flag not in known:
            raise ConfigError(f"SM_HPS has unknown hyperparameter {key!r}")
        tokens += [flag, str(value)]
    return tokens


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> TrainConfig:
    """The one place that turns flags and environment into a validated :class:`TrainConfig`."""
    environ = dict(os.environ if environ is None else environ)
    parser = build_parser(environ)
    tokens = hyperparameter_args(parser, environ.get("SM_HPS"))
    args = parser.parse_args([*tokens, *(argv if argv is not None else sys.argv[1:])])
    return _validate(args, environ)


def _check_model(arch: str, image_size: int) -> None:
    """The arch exists and takes ``image_size`` px input: ViTs take only 224 (MaxViT 221-224), and a
    deep CNN pools a small image down to nothing, which would otherwise surface on the first batch."""
    if arch not in models.list_models(module=models):
        raise ConfigError(f"--arch must be a torchvision classification model name, got {arch!r}")
    reason = image_size_error(arch, image_size)
    if reason is not None:
        works = f"{REFERENCE_IMAGE_SIZE} does"
        raise ConfigError(f"--image-size {image_size} does not work with --arch {arch} ({works}): {reason}")


def _validate(args: argparse.Namespace, environ: Mapping[str, str]) -> TrainConfig:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(args.epochs >= 1, "--epochs must be at least 1")
    require(0 <= args.freeze_epochs <= args.epochs, "--freeze-epochs must be between 0 and --epochs")
    require(
        args.lr_warmup_epochs in (None, 0) or 0 <= args.lr_warmup_epochs < args.epochs,
        "--lr-warmup-epochs must be less than --epochs",
    )
    require(args.batch_size >= 1, "--batch-size must be at least 1")
    require(args.lr is None or args.lr > 0, "--lr must be positive")
    require(args.keep in KEEP_CHOICES, f"--keep must be one of {', '.join(KEEP_CHOICES)}, got {args.keep!r}")
    require(0 < args.ema_decay < 1, "--ema-decay must be in (0, 1)")
    require(args.ema_steps >= 1, "--ema-steps must be at least 1")
    require(16 <= args.image_size <= 1024, "--image-size must be between 16 and 1024")
    _check_model(args.arch, args.image_size)
    require(0 < args.min_crop_scale <= 1, "--min-crop-scale must be in (0, 1]")
    require(0 <= args.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
    require(args.workers >= 0 and args.threads >= 0, "--workers and --threads must be >= 0")
    # Under torchrun the file need be on one host only: whichever rank has it reads it, and the run
    # stops if none does (train.load_resume_state). A single process can be told at once.
    require(
        args.resume in ("auto", "never") or Path(args.resume).is_file() or dist_env(environ).distributed,
        f"--resume must be 'auto', 'never' or an existing checkpoint file, got {args.resume!r}",
    )
    weights = args.weights
    if weights not in WEIGHTS_CHOICES:
        require(
            Path(weights).is_file(),
            f"--weights must be 'imagenet', 'none' or an existing file, got {weights!r}",
        )
    data_dir = Path(args.data_dir)
    require(
        (data_dir / "train").is_dir() and (data_dir / "valid").is_dir(),
        f"--data-dir {data_dir} must contain train/ and valid/ class folders",
    )

    model_dir = Path(args.model_dir)
    if args.checkpoint_dir is None:
        checkpoint_dir: Path | None = model_dir / "checkpoints"
    elif args.checkpoint_dir.lower() == "none":
        checkpoint_dir = None
    else:
        checkpoint_dir = Path(args.checkpoint_dir)
    dist = dist_env(environ)
    global_batch = args.batch_size * dist.world_size
    lr = learning_rate(args.opt, args.lr, global_batch, args.epochs, args.lr_warmup_epochs)
    return TrainConfig(
        data_dir=data_dir,
        model_dir=model_dir,
        output_dir=Path(args.output_dir) if args.output_dir else model_dir,
        checkpoint_dir=checkpoint_dir,
        resume=args.resume,
        arch=args.arch,
        weights=weights,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        batch_size=args.batch_size,
        lr=lr.lr,
        base_lr=lr.base_lr,
        lr_reference_batch=LR_REFERENCE_BATCH,
        lr_rule=lr.rule,
        global_batch=global_batch,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        opt=args.opt,
        label_smoothing=args.label_smoothing,
        lr_warmup_epochs=lr.warmup_epochs,
        keep=args.keep,
        ema_decay=args.ema_decay,
        ema_steps=args.ema_steps,
        image_size=args.image_size,
        min_crop_scale=args.min_crop_scale,
        seed=args.seed,
        amp=args.amp,
        amp_dtype=args.amp_dtype,
        workers=args.workers,
        threads=args.threads,
        channels_last=args.channels_last,
        compile=args.compile,
        progress=args.progress,
        dist=dist,
        sagemaker="SM_MODEL_DIR" in environ,
    )
