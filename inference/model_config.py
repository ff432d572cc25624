"""``model_config.json``: what the endpoint needs to rebuild and feed the trained model.

Training writes it next to ``model.pt``; ``inference.model_fn`` reads it. One definition keeps the
two sides from drifting apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILENAME = "model_config.json"
# The endpoint's contract: the request bodies it decodes and the one response type it writes. Here, not in
# inference.py, because this module imports neither torch nor Pillow: training.register names them in the
# model package from an environment without either.
SUPPORTED_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "application/x-image"})
RESPONSE_CONTENT_TYPE = "application/json"
WEIGHTS_FILENAME = "model.pt"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    class_names: tuple[str, ...]
    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # Free-form facts about the run (torch version, metrics, dataset); never needed to serve.
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.arch or not isinstance(self.arch, str):
            raise ValueError("model_config.arch must be a torchvision model name")
        if len(self.class_names) < 2:
            raise ValueError("model_config.class_names must list at least 2 classes")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("model_config.class_names must be unique")
        if not 16 <= self.image_size <= self.resize_size <= 4096:
            raise ValueError("model_config needs 16 <= image_size <= resize_size <= 4096")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("model_config.mean/std must be 3 numbers each, std > 0")
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"model_config.format_version {self.format_version} is not {FORMAT_VERSION}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model_config has unknown keys: {', '.join(unknown)}")
        return cls(
            arch=data["arch"],
            class_names=tuple(data["class_names"]),
            image_size=int(data["image_size"]),
            resize_size=int(data["resize_size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            metadata=dict(data.get("metadata", {})),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
        )

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CONFIG_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads((Path(model_dir) / CONFIG_FILENAME).read_text()))
