"""Unit tests: class names, samplers, augmentation, model surgery, metrics, checkpoints, synthetic data."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models

from inference.architecture import AUX_HEADS, build_model
from training import synthetic
from training.artifact import export_state_dict
from training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from training.config import parse_config
from training.data import (
    SeededAugmentation,
    class_name_from_folder,
    load_data,
    shard_indices,
    train_transform,
)
from training.distributed import DistContext
from training.metrics import Accumulator, epoch_line
from training.model import (
    create_model,
    head_parameter_names,
    set_backbone_frozen,
    set_frozen_norm_eval,
    strip_prefixes,
)


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("001.Affenpinscher", "Affenpinscher"),
        ("096.Labrador_retriever", "Labrador retriever"),
        ("133.Yorkshire_terrier", "Yorkshire terrier"),
        ("042.Cavalier_king_charles_spaniel", "Cavalier king charles spaniel"),
        ("Border_collie", "Border collie"),  # no number: the folder as is
        ("007.Dogue_de__Bordeaux_", "Dogue de Bordeaux"),
    ],
)
def test_class_name_from_folder(folder, name):
    assert class_name_from_folder(folder) == name


def test_class_name_needs_a_name():
    with pytest.raises(ValueError, match="no name"):
        class_name_from_folder("001._")


@pytest.mark.parametrize(("length", "world"), [(0, 2), (1, 2), (11, 2), (12, 3), (7, 8)])
def test_evaluation_shards_are_disjoint_and_cover_every_sample_once(length, world):
    shards = [shard_indices(length, rank, world) for rank in range(world)]
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(length))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


class _FakeFolder:
    def __init__(self, n: int) -> None:
        ramp = np.linspace(0, 255, 48, dtype=np.uint8)
        pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), axis=-1)
        self.images = [
            Image.fromarray(np.ascontiguousarray(np.roll(pixels, 7 * i, axis=0))) for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 2


def test_augmentation_depends_only_on_seed_epoch_and_index():
    data = SeededAugmentation(_FakeFolder(3), train_transform(32, 0.2), seed=5)
    data.set_epoch(2)
    torch.manual_seed(0)
    first = [data[i][0] for i in range(3)]
    torch.manual_seed(123)  # another global seed and another order: the same crops and flips
    again = [data[i][0] for i in (2, 0, 1)]
    assert (
        torch.equal(first[0], again[1])
        and torch.equal(first[1], again[2])
        and torch.equal(first[2], again[0])
    )
    state = torch.get_rng_state()
    data[0]
    assert torch.equal(state, torch.get_rng_state())  # loading leaves the global RNG alone
    data.set_epoch(3)
    assert not torch.equal(data[0][0], first[0])  # and a new epoch gives new augmentations


def test_augmenting_in_the_main_process_leaves_the_cuda_generators_alone(monkeypatch):
    """With --workers 0 the training process itself augments. fork_rng(devices=[]) restores only the CPU
    generator, and torch.manual_seed inside it reseeded every CUDA generator as well, so on a GPU each
    image reset the CUDA RNG (dropout, any CUDA sampling) to a seed of that image."""
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    data = SeededAugmentation(_FakeFolder(2), train_transform(32, 0.2), seed=5)
    first = data[(1, 0)][0]
    assert reseeded == []
    monkeypatch.undo()
    assert torch.equal(data[(1, 0)][0], first)  # still a function of (seed, epoch, index)
    if torch.cuda.is_available():  # the real generator, where there is one
        before = torch.cuda.get_rng_state()
        data[(1, 1)]
        assert torch.equal(torch.cuda.get_rng_state(), before)


def test_persistent_loader_workers_augment_every_epoch_anew(dataset, tmp_path):
    """A DataLoader worker keeps the dataset copy it got in epoch 0; the epoch must reach it anyway,
    or every epoch repeats epoch 0's crops and the model memorises them (train top-1 1.0, val at chance)."""
    argv = ["--data-dir", str(dataset), "--model-dir", str(tmp_path), "--image-size", "32",
            "--batch-size", "8", "--workers", "1", "--seed", "3"]  # fmt: skip
    cfg = parse_config(argv, environ={})
    data = load_data(cfg, DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    loader = data.train_loader(cfg)
    assert loader.persistent_workers
    first = {}
    for epoch in (0, 1, 2):
        data.train.set_epoch(epoch)  # what train.py does at the start of an epoch
        data.train_sampler.set_epoch(epoch)
        images, _ = next(iter(loader))
        order = list(data.train_sampler)[: len(images)]
        expected = torch.stack([data.train[(epoch, index)][0] for index in order])
        assert torch.equal(images, expected)  # the worker augmented for this epoch
        first[epoch] = data.train[(epoch, 0)][0]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    data.train.set_epoch(2)
    assert torch.equal(data.train[0][0], first[2])  # an index alone means the epoch set last


@pytest.mark.parametrize(
    ("arch", "head"),
    [
        ("resnet50", {"fc.weight", "fc.bias"}),
        ("mobilenet_v3_small", {"classifier.3.weight", "classifier.3.bias"}),
        ("vit_b_16", {"heads.head.weight", "heads.head.bias"}),
        ("inception_v3", {"fc.weight", "fc.bias"}),  # built without the auxiliary head
        ("googlenet", {"fc.weight", "fc.bias"}),
        ("squeezenet1_1", {"classifier.1.weight", "classifier.1.bias"}),
        ("regnet_y_400mf", {"fc.weight", "fc.bias"}),  # does not build on the meta device
    ],
)
def test_head_is_found_for_any_torchvision_classifier(arch, head):
    assert head_parameter_names(arch) == head


def test_a_regnet_s_backbone_is_frozen_and_unfrozen(monkeypatch):
    """RegNets' builders compute with tensors, which fails on the meta device: unfreezing at the end of
    the warm-up ended every RegNet run. Asked every epoch, the head is found once."""
    model = build_model("regnet_y_400mf", 5)
    set_backbone_frozen(model, "regnet_y_400mf", True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    model.train()
    monkeypatch.setattr("training.model.build_model", None)  # cached: nothing is built again
    set_frozen_norm_eval(model, "regnet_y_400mf", True)
    assert not model.stem[1].training and model.training
    set_backbone_frozen(model, "regnet_y_400mf", False)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("arch", "size"), [("googlenet", 64), ("inception_v3", 80)])
def test_googlenet_and_inception_train_without_auxiliary_outputs(arch, size):
    """In training mode they would return (logits, aux...); the loop trains on the logits, and DDP then
    stops at step 2 on the aux heads' parameters that got no gradient. They are built without them."""
    model = build_model(arch, 3).train()
    assert not any(name.startswith(AUX_HEADS[arch]) for name in model.state_dict())
    assert isinstance(model(torch.randn(2, 3, size, size)), torch.Tensor)


def test_imagenet_weights_of_googlenet_fill_the_backbone_without_the_auxiliary_heads(tmp_path):
    """torchvision's ImageNet checkpoints for GoogLeNet and Inception v3 have the aux heads' weights."""
    torch.manual_seed(0)
    imagenet = models.googlenet(weights=None, aux_logits=True, init_weights=True).state_dict()
    assert any(name.startswith("aux1.") for name in imagenet)
    path = tmp_path / "googlenet-imagenet.pth"
    torch.save(imagenet, path)
    model = create_model("googlenet", 7, str(path))
    for name, tensor in model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, imagenet[name]), name
    build_model("googlenet", 7).load_state_dict(model.state_dict())  # strict, as the endpoint loads


def test_local_imagenet_weights_fill_the_backbone_and_a_new_head_is_made(tmp_path):
    torch.manual_seed(0)
    imagenet = models.resnet18(weights=None)  # stands in for torchvision's 1000-class checkpoint
    path = tmp_path / "resnet18-imagenet.pth"
    # As saved from a DDP-wrapped model: the prefix must not matter.
    torch.save({f"module.{k}": v for k, v in imagenet.state_dict().items()}, path)
    model = create_model("resnet18", 7, str(path))
    assert model.fc.out_features == 7
    for name, tensor in model.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(tensor, imagenet.state_dict()[name]), name
    build_model("resnet18", 7).load_state_dict(model.state_dict())  # what the endpoint will do
    with pytest.raises(ValueError, match="do not fit resnet34"):
        create_model("resnet34", 7, str(path))


def test_frozen_warm_up_trains_only_the_head():
    model = build_model("resnet18", 5)
    set_backbone_frozen(model, "resnet18", True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    model.train()
    set_frozen_norm_eval(model, "resnet18", True)
    assert not model.bn1.training and model.training
    set_backbone_frozen(model, "resnet18", False)
    assert all(p.requires_grad for p in model.parameters())


def test_accumulator_counts_top1_and_top5():
    meter = Accumulator()
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 0], [0, 1, 2, 3, 4, 5, 9], [9, 0, 1, 2, 3, 4, 5]])
    targets = torch.tensor([0, 0, 3])  # top-1 hit; miss everywhere; in the top 5 only
    meter.update(logits, targets, torch.tensor(2.0))
    meter.update(logits[:1], targets[:1], torch.tensor(5.0))
    result = meter.reduce(DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    assert result == {"loss": pytest.approx((2 * 3 + 5) / 4), "acc1": 0.5, "acc5": 0.75, "samples": 4}


def test_epoch_line_is_one_line_of_key_value_pairs():
    record = dict.fromkeys(("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "lr",
                            "images_per_sec", "epoch_seconds"), 0.5)  # fmt: skip
    line = epoch_line({**record, "epoch": 2}, 9)
    assert "\n" not in line and line.startswith("epoch=2/9 train_loss=0.5 ")


def test_checkpoint_round_trips_with_weights_only(tmp_path):
    random.seed(4)
    torch.manual_seed(4)
    state = {"model": build_model("resnet18", 3).state_dict(), "epoch": 2, "step": 5, "rng": [rng_state()]}
    path = save_checkpoint(state, tmp_path)
    expected = (random.random(), torch.rand(3))  # noqa: S311 - reproducibility, not secrecy
    loaded = load_checkpoint(path)  # weights_only=True inside
    assert (loaded["epoch"], loaded["step"]) == (2, 5)
    set_rng_state(loaded["rng"][0])
    assert random.random() == expected[0]  # noqa: S311
    assert torch.equal(torch.rand(3), expected[1])
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_synthetic_recipes_are_distinct_and_the_output_is_reproducible(tmp_path):
    recipes = [synthetic.class_recipe(i) for i in range(synthetic.MAX_CLASSES)]
    assert len(set(recipes)) == synthetic.MAX_CLASSES
    # Even two classes differ by shape alone: same texture and palette.
    assert recipes[0][1:] == recipes[1][1:] and recipes[0][0] != recipes[1][0]

    def digest(root):
        files = sorted(root.rglob("*.jpg"))
        return [(f.relative_to(root).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files]

    a = synthetic.generate(tmp_path / "a", classes=3, per_class=4, size=32, seed=9)
    b = synthetic.generate(tmp_path / "b", classes=3, per_class=4, size=32, seed=9)
    c = synthetic.generate(tmp_path / "c", classes=3, per_class=4, size=32, seed=10)
    assert digest(a) == digest(b) != digest(c)
    assert len(digest(a)) == 3 * (4 + 2 + 2)
    assert sorted(p.name for p in (a / "train").iterdir()) == [synthetic.class_folder(i) for i in range(3)]
    with Image.open(next((a / "valid").rglob("*.jpg"))) as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_synthetic_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit, match="--classes must be between 2 and 120"):
        synthetic.main(["--out", "unused", "--classes", "1"])


def test_imagenet_weights_come_from_torchvision_s_weights_api(monkeypatch):
    """The download itself is replaced (no network here); the URL and the rest of the path are real."""
    torch.manual_seed(1)
    imagenet = models.resnet18(weights=None).state_dict()
    requested = []

    def fake_download(url, *args, **kwargs):
        requested.append((url, kwargs))
        return imagenet

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", fake_download)
    model = create_model("resnet18", 3, "imagenet")
    assert requested == [(models.ResNet18_Weights.DEFAULT.url, {"progress": False, "check_hash": True})]
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert model.fc.out_features == 3


def test_exported_weights_have_no_compile_or_ddp_prefixes():
    model = build_model("resnet18", 3)
    compiled = torch.compile(model)  # lazy: nothing is compiled until the first forward
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    exported = export_state_dict(compiled)
    assert list(exported) == list(model.state_dict())
    assert all(t.device.type == "cpu" for t in exported.values())
    channels_last = build_model("resnet18", 3).to(memory_format=torch.channels_last)
    assert all(t.is_contiguous() for t in export_state_dict(channels_last).values())
    assert strip_prefixes({"module._orig_mod.fc.bias": torch.zeros(1)}).keys() == {"fc.bias"}


def _write_truncated_image_folder(root):
    """train/ and valid/ with one class of two JPEGs; train's second file cut off halfway, as
    dogImages' train/098.Leonberger/Leonberger_06571.jpg is."""
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        folder = root / split / "001.Leonberger"
        folder.mkdir(parents=True)
        for name in ("a.jpg", "b.jpg"):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name, quality=90)
    truncated = root / "train" / "001.Leonberger" / "b.jpg"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return truncated


def test_a_truncated_training_jpeg_is_trained_on_instead_of_killing_the_run(tmp_path):
    """Pillow refuses truncated files by default; one such file in the real dataset ended every
    full-dataset run in epoch 1. Training decodes what is there (the decoder fills in the rest), in the
    main process (--workers 0) and in DataLoader worker processes alike."""
    truncated = _write_truncated_image_folder(tmp_path / "data")
    with pytest.raises(OSError, match="truncated"):  # the premise: Pillow's default refuses it
        Image.open(truncated).load()
    for workers in ("0", "1"):
        argv = ["--data-dir", str(tmp_path / "data"), "--model-dir", str(tmp_path / "m"), "--arch",
                "resnet18", "--image-size", "32", "--batch-size", "2", "--workers", workers]  # fmt: skip
        cfg = parse_config(argv, environ={})
        data = load_data(cfg, DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
        data.train_sampler.set_epoch(0)
        images, targets = next(iter(data.train_loader(cfg)))
        assert images.shape == (2, 3, 32, 32) and targets.tolist() == [0, 0]


def test_training_s_tolerance_of_truncated_files_does_not_reach_the_endpoint_s_decoder(tmp_path):
    """Pillow's switch for truncated files is process-wide; the endpoint must keep rejecting them (a
    400), also in a process that has loaded training data (the test suite, the demo)."""
    from PIL import ImageFile

    from inference.preprocessing import ImageDecodeError, decode_image
    from training.data import load_training_image

    truncated = _write_truncated_image_folder(tmp_path / "data")
    assert load_training_image(str(truncated)).size == (64, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageDecodeError, match="damaged or truncated"):
        decode_image(truncated.read_bytes())
