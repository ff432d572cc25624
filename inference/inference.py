"""SageMaker PyTorch inference handler functions (placeholder; being completed by the serving issue)."""

from __future__ import annotations

import json

import torch

try:
    from .architecture import build_model
    from .model_config import WEIGHTS_FILENAME, ModelConfig
    from .preprocessing import decode_image, eval_transform
except ImportError:  # inside the container, code/ is on sys.path and the modules are top-level
    from architecture import build_model
    from model_config import WEIGHTS_FILENAME, ModelConfig
    from preprocessing import decode_image, eval_transform


def model_fn(model_dir):
    config = ModelConfig.load(model_dir)
    model = build_model(config.arch, config.num_classes)
    state = torch.load(f"{model_dir}/{WEIGHTS_FILENAME}", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, config


def input_fn(input_data, content_type):
    return decode_image(bytes(input_data))


def predict_fn(image, loaded):
    model, config = loaded
    transform = eval_transform(config.image_size, config.resize_size, config.mean, config.std)
    with torch.inference_mode():
        probs = model(transform(image).unsqueeze(0)).softmax(1)[0]
    top = probs.topk(min(5, config.num_classes))
    return [
        {"breed": config.class_names[i], "index": int(i), "probability": float(p)}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def output_fn(predictions, accept):
    return json.dumps({"predictions": predictions})
