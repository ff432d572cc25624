"""SageMaker PyTorch inference handler functions: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

The PyTorch inference DLC (TorchServe + sagemaker-pytorch-inference) imports this module from the
artifact's ``code/`` directory and calls, per request, ``output_fn(predict_fn(input_fn(body,
content_type), model), accept)``. The same functions serve ``localdev.local_endpoint``.

Errors: the toolkit turns a ``sagemaker_inference.errors.BaseInferenceToolkitError`` raised by a
handler into a response with that status code and ``message + "\\n" + traceback`` as the body; any
other exception becomes a 500. So every bad-request error here is a :class:`RequestError` (a
``BaseInferenceToolkitError`` when the toolkit is importable) whose message is one line of JSON,
``{"error": {"code": ..., "message": ...}}``: a caller can parse the first line of the body.

Request context: the toolkit passes the TorchServe context as an extra trailing argument to a
handler whose signature has room for it (sagemaker-inference >= 1.8, ``_run_handler_function``
counts parameters). Some sagemaker-pytorch-inference releases pass ``None`` instead, and the
oldest pass nothing; ``context=None`` covers all three. The context is the only way to see the
``X-Amzn-SageMaker-Custom-Attributes`` header (``top_k=N``); without it ``top_k`` is the default.

Logs: a rejected request (a 4xx) is one line, ``rejected request ID: STATUS CODE: MESSAGE``. The toolkit
also logs every handler exception with its whole traceback (``Transformer.handle_error``: one record of
18 lines' worth for a bad content type); for our own ``RequestError`` that record is dropped by a filter
on the root logger, the toolkit's logger. A 5xx keeps the toolkit's traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from PIL import Image

try:
    from .architecture import build_model
    from .model_config import RESPONSE_CONTENT_TYPE, SUPPORTED_CONTENT_TYPES, WEIGHTS_FILENAME, ModelConfig
    from .preprocessing import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, eval_transform
except ImportError:  # inside the container code/ is on sys.path and the modules are top-level
    from architecture import build_model  # type: ignore[no-redef]
    from model_config import (  # type: ignore[no-redef]
        RESPONSE_CONTENT_TYPE,
        SUPPORTED_CONTENT_TYPES,
        WEIGHTS_FILENAME,
        ModelConfig,
    )
    from preprocessing import (  # type: ignore[no-redef]
        DEFAULT_MAX_PIXELS,
        ImageDecodeError,
        decode_image,
        eval_transform,
    )

try:  # present in the SageMaker inference containers; absent in training and in the repo's venv
    from sagemaker_inference.errors import BaseInferenceToolkitError as ToolkitError
except ImportError:

    class ToolkitError(Exception):  # type: ignore[no-redef]
        """Local stand-in with the toolkit's constructor: (status_code, message, phrase)."""

        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"
_DECODE_ERROR_CODES = {413: "image_too_large", 415: "unsupported_image_format"}
# Custom attributes are opaque to SageMaker (<= 1024 ASCII chars); we read "top_k=N" from a list of
# key=value pairs separated by "," or ";" so a caller may send other attributes alongside.
_TOP_K_ATTRIBUTE = re.compile(r"(?:^|[,;])\s*top_k\s*=\s*([^,;]*)")


class RequestError(ToolkitError):
    """A request the model cannot serve; ``status_code`` is 4xx and the message is safe to return."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        self.code = code
        self.detail = message
        body = json.dumps({"error": {"code": code, "message": message}})
        super().__init__(status_code, body, HTTPStatus(status_code).phrase)


# sagemaker_inference.transformer.Transformer.handle_error's record: logged on the root logger with the
# model name and ``traceback.format_exc().splitlines()`` as its two arguments.
_TOOLKIT_ERROR_RECORD = "Transform failed for model: %s. Error traceback: %s"
_REQUEST_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?RequestError: ")


class _RejectedRequestTraceFilter(logging.Filter):
    """Drops the toolkit's traceback record for a ``RequestError``: it was logged as one line already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != _TOOLKIT_ERROR_RECORD or not isinstance(record.args, tuple) or len(record.args) != 2:
            return True
        trace = record.args[1]
        last = trace[-1] if isinstance(trace, list) and trace else ""
        return not (isinstance(last, str) and _REQUEST_ERROR_LINE.match(last))


_ROOT_FILTER = _RejectedRequestTraceFilter()
if not any(isinstance(existing, _RejectedRequestTraceFilter) for existing in logging.getLogger().filters):
    logging.getLogger().addFilter(_ROOT_FILTER)


@dataclass(frozen=True)
class LoadedModel:
    """What ``model_fn`` returns and ``predict_fn`` receives."""

    network: torch.nn.Module
    config: ModelConfig
    transform: Callable[[Image.Image], torch.Tensor]
    device: torch.device
    dtype: torch.dtype
    version: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    # TorchServe runs one request at a time per worker process, so this lock is free there; a
    # threaded server (localdev.local_endpoint) gets one forward pass at a time instead of
    # several fighting over the same cores and intra-op thread pool.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def info(self) -> dict[str, Any]:
        """Facts about the served model that a caller may see (no paths, no hostnames)."""
        return {
            "arch": self.config.arch,
            "num_classes": self.config.num_classes,
            "image_size": self.config.image_size,
            "version": self.version,
        }


@dataclass(frozen=True)
class ImageRequest:
    """What ``input_fn`` returns: the decoded upright RGB image and how many classes to answer."""

    image: Image.Image
    top_k: int


@dataclass(frozen=True)
class Prediction:
    """What ``predict_fn`` returns: the ``top_k`` best classes, most probable first."""

    predictions: list[dict[str, Any]]
    model: dict[str, Any]


# input_fn receives no model argument, yet decoding wants the model's limits (pixel cap, the size
# a JPEG may be DCT-downscaled to). The toolkit loads one model per worker process, so model_fn
# records it here; before any model_fn, input_fn uses the module defaults.
_serving: LoadedModel | None = None


def model_fn(model_dir: str, context: Any = None) -> LoadedModel:
    """Rebuild the network from ``model_config.json``, load ``model.pt`` without unpickling code."""
    global _serving
    config = ModelConfig.load(model_dir)
    weights_path = Path(model_dir) / WEIGHTS_FILENAME
    device = serving_device(context)
    # fp16 halves memory traffic on a GPU at no accuracy cost for a classifier; CPUs gain nothing.
    dtype = torch.float16 if device.type == "cuda" else torch.float32

    network = build_model(config.arch, config.num_classes)
    # weights_only=True: a model.pt is data, and must not be able to run code when it is loaded.
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state_dict)
    except Exception as exc:
        # The first line a reader of the container log (or localdev.check_artifact) sees.
        raise RuntimeError(
            f"{WEIGHTS_FILENAME} does not load as this model's state_dict ({config.arch}, "
            f"{config.num_classes} classes, torch.load weights_only): {type(exc).__name__}: {exc}"
        ) from exc
    network.to(device=device, dtype=dtype).eval()
    if device.type == "cuda":
        network.to(memory_format=torch.channels_last)

    loaded = LoadedModel(
        network=network,
        config=config,
        transform=eval_transform(config.image_size, config.resize_size, config.mean, config.std),
        device=device,
        dtype=dtype,
        version=_digest(weights_path),
    )
    _warm_up(loaded)
    _serving = loaded
    logger.info("loaded %s (%d classes) on %s as %s", config.arch, config.num_classes, device, dtype)
    return loaded


def serving_device(context: Any = None) -> torch.device:
    """The device this worker serves on: the GPU TorchServe assigned to it, else any GPU, else the CPU.

    TorchServe starts workers round-robin over the GPUs and says which in ``gpu_id``; a plain
    ``cuda`` would put every worker of a multi-GPU instance on GPU 0 and leave the others idle.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id")
    if gpu_id is None or str(gpu_id) == "":
        return torch.device("cuda")
    return torch.device(f"cuda:{int(gpu_id)}")


def input_fn(input_data: bytes | bytearray, content_type: str | None, context: Any = None) -> ImageRequest:
    """Check the content type, read ``top_k``, decode the image; a bad request is a :class:`RequestError`."""
    try:
        return _read_request(input_data, content_type, context)
    except RequestError as error:
        _log_rejection(error, context)
        raise


def _read_request(input_data: bytes | bytearray, content_type: str | None, context: Any) -> ImageRequest:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in SUPPORTED_CONTENT_TYPES:
        allowed = ", ".join(sorted(SUPPORTED_CONTENT_TYPES))
        raise RequestError(
            415,
            "unsupported_media_type",
            f"content type {media_type[:100]!r} is not supported; send {allowed}",
        )
    top_k = parse_top_k(_custom_attributes(context))
    if not isinstance(input_data, bytes | bytearray | memoryview):
        # The toolkit decodes text content types to str; ours are all binary, so this means a bug
        # upstream rather than a bad image. Still the caller's request: answer, don't crash.
        raise RequestError(400, "invalid_image", "the request body must be the raw image bytes")
    serving = _serving
    try:
        image = decode_image(
            bytes(input_data),
            max_pixels=serving.max_pixels if serving else DEFAULT_MAX_PIXELS,
            min_side=serving.config.resize_size if serving else None,
        )
    except ImageDecodeError as exc:
        raise RequestError(
            exc.status_code, _DECODE_ERROR_CODES.get(exc.status_code, "invalid_image"), str(exc)
        ) from None
    return ImageRequest(image=image, top_k=top_k)


def predict_fn(request: ImageRequest, model: LoadedModel, context: Any = None) -> Prediction:
    """Preprocess with the evaluation preset, run the network, keep the ``top_k`` most probable classes."""
    batch = model.transform(request.image).unsqueeze(0).to(model.device, dtype=model.dtype, non_blocking=True)
    if model.device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    k = min(request.top_k, model.config.num_classes)
    with model.lock, torch.inference_mode():
        # softmax in fp32: fp16 rounds small probabilities to 0 and the top ones to 3 digits.
        top = model.network(batch).float().softmax(dim=1)[0].topk(k)
        indices, probabilities = top.indices.tolist(), top.values.tolist()
    names = model.config.class_names
    return Prediction(
        predictions=[
            {"breed": names[index], "index": index, "probability": round(probability, 6)}
            for index, probability in zip(indices, probabilities, strict=True)
        ],
        model=model.info,
    )


def output_fn(prediction: Prediction, accept: str | None, context: Any = None) -> tuple[str, str]:
    """``{"predictions": [{"breed", "index", "probability"}, ...], "model": {...}}`` as JSON."""
    if not accepts_json(accept):
        error = RequestError(
            406, "not_acceptable", f"the response is {RESPONSE_CONTENT_TYPE}, not {accept[:100]!r}"
        )
        _log_rejection(error, context)
        raise error
    body = {"predictions": prediction.predictions, "model": prediction.model}
    return json.dumps(body), RESPONSE_CONTENT_TYPE


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header admits JSON: any one of its comma-separated media ranges may.

    Browsers and HTTP libraries send lists such as ``application/json, text/plain, */*``. JSON is
    the only representation there is, so parameters (q-values included) have nothing to rank.
    """
    if not accept or not accept.strip():
        return True
    ranges = (media_range.split(";", 1)[0].strip().lower() for media_range in accept.split(","))
    return any(media_type in (RESPONSE_CONTENT_TYPE, "application/*", "*/*") for media_type in ranges)


def parse_top_k(custom_attributes: str | None) -> int:
    """``top_k`` from a custom-attributes value such as ``"top_k=3"``; the default when absent."""
    if not custom_attributes:
        return DEFAULT_TOP_K
    match = _TOP_K_ATTRIBUTE.search(custom_attributes)
    if match is None:
        return DEFAULT_TOP_K
    value = match.group(1).strip()
    # isdigit() alone accepts "²" or "٣", which int() then rejects or reads as a number the
    # caller did not write; only ASCII digits are a top_k. The length goes first: int() refuses
    # more than 4,300 digits with a ValueError (a 500), and no top_k up to 10,000 needs over 5.
    if len(value) > 5 or not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 10_000:
        raise RequestError(400, "invalid_top_k", f"top_k must be a positive integer, got {value[:20]!r}")
    return int(value)


def _warm_up(loaded: LoadedModel) -> None:
    """One forward pass at load: cuDNN picks its kernels and lazy allocations happen before traffic."""
    size = loaded.config.image_size
    predict_fn(ImageRequest(image=Image.new("RGB", (size, size)), top_k=1), loaded)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)


def _digest(path: Path) -> str:
    """A short content hash of the weights: tells which model answered, across redeploys."""
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:12]


def _log_rejection(error: RequestError, context: Any) -> None:
    logger.info(
        "rejected request %s: %d %s: %s", _request_id(context), error.status_code, error.code, error.detail
    )


def _request_id(context: Any) -> str:
    """TorchServe's id of the request (its access and metrics logs use the same one), else ``-``."""
    try:
        return str(context.get_request_id(0))
    except (AttributeError, IndexError, KeyError, TypeError):
        return "-"


def _custom_attributes(context: Any) -> str | None:
    """The custom-attributes header from a TorchServe/MMS context, if the toolkit passed one."""
    if context is None:
        return None
    try:
        properties = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    for name, value in (properties or {}).items():
        if str(name).lower() == CUSTOM_ATTRIBUTES_HEADER:
            return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
    return None
