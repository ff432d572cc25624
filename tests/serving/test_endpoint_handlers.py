"""The SageMaker handler functions (inference/inference.py) on a really trained artifact."""

from __future__ import annotations

import inspect
import io
import json
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sample_images as images
import torch
from PIL import Image

from inference import inference as handlers
from inference.preprocessing import MAX_JPEG_SCANS, ImageDecodeError, decode_image


@pytest.fixture(scope="module")
def model(artifact_dir: Path) -> handlers.LoadedModel:
    return handlers.model_fn(str(artifact_dir))


def context_with(headers: dict[str, str]) -> SimpleNamespace:
    """The slice of a TorchServe context that the toolkit hands to handlers: per-request headers."""
    processor = SimpleNamespace(get_request_properties=lambda: headers)
    return SimpleNamespace(request_processor=[processor])


def serve(model, body: bytes, content_type: str, context=None) -> dict:
    """One request through the four functions, as the toolkit chains them."""
    request = handlers.input_fn(body, content_type, context)
    prediction = handlers.predict_fn(request, model, context)
    payload, response_type = handlers.output_fn(prediction, "application/json", context)
    assert response_type == "application/json"
    return json.loads(payload)


FORMATS = {
    "jpeg": (images.jpeg, "image/jpeg"),
    "jpeg-as-x-image": (images.jpeg, "application/x-image"),
    "png-rgba": (images.png_rgba, "image/png"),
    "png-grayscale": (images.png_grayscale, "image/png"),
    "png-16bit": (images.png_16bit_grayscale, "image/png"),
    "png-palette": (images.png_palette, "image/png"),
    "jpeg-cmyk": (images.jpeg_cmyk, "image/jpeg"),
    "jpeg-mpo": (images.jpeg_mpo, "image/jpeg"),
    "jpeg-grayscale": (images.jpeg_grayscale, "image/jpeg"),
    "jpeg-exif-rotated": (lambda: images.jpeg_exif_rotated(images.scene()), "image/jpeg"),
    "jpeg-progressive": (images.progressive_jpeg, "image/jpeg"),
    "webp": (images.webp, "image/webp"),
    "webp-alpha": (images.webp_lossless_alpha, "image/webp"),
    "tiny-1x1": (images.tiny_png, "image/png"),
    "large-12mp": (images.large_jpeg, "image/jpeg"),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_every_supported_format_gives_top5_predictions(model, class_names, kind):
    make, content_type = FORMATS[kind]
    body = serve(model, make(), content_type)

    predictions = body["predictions"]
    assert len(predictions) == handlers.DEFAULT_TOP_K
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities) and sum(probabilities) <= 1.0 + 1e-5
    assert len({p["index"] for p in predictions}) == len(predictions)
    for entry in predictions:
        assert set(entry) == {"breed", "index", "probability"}
        assert entry["breed"] == class_names[entry["index"]]
    assert body["model"]["arch"] == "resnet18" and body["model"]["num_classes"] == len(class_names)


def test_probabilities_match_a_direct_forward_pass(model, artifact_dir):
    """The served numbers are the network's softmax on the evaluation preset, nothing else."""
    data = images.jpeg()
    body = serve(model, data, "image/jpeg", context_with({"X-Amzn-SageMaker-Custom-Attributes": "top_k=6"}))
    network = handlers.build_model("resnet18", model.config.num_classes)
    network.load_state_dict(torch.load(artifact_dir / "model.pt", weights_only=True))
    with torch.inference_mode():
        expected = network.eval()(model.transform(decode_image(data)).unsqueeze(0)).softmax(1)[0]
    served = {p["index"]: p["probability"] for p in body["predictions"]}
    assert len(served) == model.config.num_classes
    for index, probability in served.items():
        assert probability == pytest.approx(expected[index].item(), abs=1e-5)


@pytest.mark.parametrize(
    ("make", "content_type", "status", "code"),
    [
        (lambda: b"this is not an image at all", "image/jpeg", 400, "invalid_image"),
        (images.truncated_jpeg, "image/jpeg", 400, "invalid_image"),
        (lambda: b"", "image/png", 400, "invalid_image"),
        (images.gif, "image/png", 415, "unsupported_image_format"),
        (images.bmp, "application/x-image", 415, "unsupported_image_format"),
        (images.png_bomb, "image/png", 413, "image_too_large"),
        (lambda: images.png_bomb(7000, 7000), "image/png", 413, "image_too_large"),
        (lambda: images.jpeg_scan_bomb(scans=500, size=128), "image/jpeg", 400, "invalid_image"),
        (images.jpeg, "text/csv", 415, "unsupported_media_type"),
        (images.jpeg, None, 415, "unsupported_media_type"),
    ],
    ids=[
        "not-an-image",
        "truncated",
        "empty",
        "gif",
        "bmp",
        "bomb-2.5Gpx",
        "bomb-49Mpx",
        "scan-bomb",
        "csv",
        "no-type",
    ],
)
def test_bad_input_is_a_client_error_with_a_message(model, make, content_type, status, code):
    with pytest.raises(handlers.RequestError) as raised:
        handlers.predict_fn(handlers.input_fn(make(), content_type), model)
    error = raised.value
    # What the toolkit reads: a BaseInferenceToolkitError's status_code, message and phrase.
    assert isinstance(error, handlers.ToolkitError)
    assert error.status_code == status and error.phrase
    body = json.loads(error.message)
    assert body["error"]["code"] == code and body["error"]["message"]


def test_exif_orientation_is_applied_before_the_model_sees_the_image(model):
    upright = images.scene(96, 64)
    reference = decode_image(images.encode(upright, "JPEG", quality=95))
    from_exif = decode_image(images.jpeg_exif_rotated(upright))
    untagged = decode_image(images.jpeg_rotated_without_exif(upright))

    assert from_exif.size == reference.size == (96, 64)
    assert untagged.size == (64, 96)  # the control: without the tag the pixels stay rotated
    tensors = [model.transform(image) for image in (reference, from_exif, untagged)]
    assert (tensors[1] - tensors[0]).abs().mean() < 0.05
    assert (tensors[2] - tensors[0]).abs().mean() > 0.3


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (images.png_16bit_grayscale, lambda: images.scene().convert("L").convert("RGB")),
        (images.jpeg_cmyk, images.scene),
        (images.png_palette, lambda: Image.open(io.BytesIO(images.png_palette())).convert("RGB")),
    ],
    ids=["16bit-scaled-not-clipped", "cmyk", "palette"],
)
def test_modes_convert_to_the_colours_a_viewer_shows(make, expected):
    decoded = np.asarray(decode_image(make()), dtype=float)
    assert np.abs(decoded - np.asarray(expected(), dtype=float)).mean() < 6


def test_transparent_pixels_become_white():
    decoded = np.asarray(decode_image(images.png_rgba()))
    assert decoded[0].min() >= 250  # top row: alpha 0 in the vertical alpha gradient


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"}, 2),
        ({"x-amzn-sagemaker-custom-attributes": "trace=abc, top_k=3"}, 3),
        ({"X-Amzn-SageMaker-Custom-Attributes": "top_k=1;trace=x"}, 1),
        ({"X-Amzn-SageMaker-Custom-Attributes": "top_k=99"}, 6),  # capped at the number of classes
        ({"X-Amzn-SageMaker-Custom-Attributes": "stop_k=2"}, 5),
        ({}, 5),
    ],
)
def test_top_k_comes_from_the_custom_attributes_header(model, attributes, expected):
    body = serve(model, images.jpeg(), "image/jpeg", context_with(attributes))
    assert len(body["predictions"]) == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", "", "1.5", "\u00b2", "\u0663"])
def test_a_bad_top_k_attribute_is_a_400(model, value):
    with pytest.raises(handlers.RequestError) as raised:
        handlers.input_fn(
            images.jpeg(),
            "image/jpeg",
            context_with({"X-Amzn-SageMaker-Custom-Attributes": f"top_k={value}"}),
        )
    assert raised.value.status_code == 400 and raised.value.code == "invalid_top_k"


def test_handlers_accept_the_toolkit_context_argument_and_work_without_it(model):
    """sagemaker-inference passes the context when a handler has one more parameter than it sends."""
    for function, sent in [(handlers.model_fn, 1), (handlers.input_fn, 2), (handlers.predict_fn, 2)]:
        assert len(inspect.signature(function).parameters) == sent + 1
    assert len(inspect.signature(handlers.output_fn).parameters) == 3
    # Older toolkits call with the positional arguments only; a PyTorch toolkit variant passes None.
    request = handlers.input_fn(images.jpeg(), "image/jpeg")
    assert handlers.input_fn(images.jpeg(), "image/jpeg", None).top_k == request.top_k == 5
    assert (
        len(json.loads(handlers.output_fn(handlers.predict_fn(request, model), "*/*")[0])["predictions"]) == 5
    )


@pytest.mark.parametrize("accept", ["text/csv", "text/csv, image/png", "application/jsonx", "text/*"])
def test_unacceptable_accept_is_a_client_error(model, accept):
    prediction = handlers.predict_fn(handlers.input_fn(images.jpeg(), "image/jpeg"), model)
    with pytest.raises(handlers.RequestError) as raised:
        handlers.output_fn(prediction, accept)
    assert raised.value.status_code == 406


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/json, text/plain, */*",  # what axios and many browsers send
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "text/csv, application/*",
    ],
)
def test_an_accept_list_that_admits_json_gets_json(model, accept):
    prediction = handlers.predict_fn(handlers.input_fn(images.jpeg(), "image/jpeg"), model)
    body, content_type = handlers.output_fn(prediction, accept)
    assert content_type == "application/json" and json.loads(body)["predictions"]


def test_a_jpeg_with_more_scans_than_any_encoder_writes_is_refused_before_decoding():
    normal_scans = images.progressive_jpeg().count(b"\xff\xda")
    at_limit = images.jpeg_scan_bomb(scans=MAX_JPEG_SCANS - normal_scans + 1, size=64)
    over_limit = images.jpeg_scan_bomb(scans=MAX_JPEG_SCANS - normal_scans + 2, size=64)
    assert at_limit.count(b"\xff\xda") == MAX_JPEG_SCANS

    assert decode_image(at_limit).size == (64, 64)
    with pytest.raises(ImageDecodeError, match=f"more than {MAX_JPEG_SCANS} scans"):
        decode_image(over_limit)


class _Context:
    """The part of TorchServe's context that model_fn reads."""

    def __init__(self, gpu_id):
        self.system_properties = {"model_dir": "/opt/ml/model", "gpu_id": gpu_id}


@pytest.mark.parametrize(
    ("cuda", "context", "expected"),
    [
        (False, _Context(1), "cpu"),
        (True, _Context(1), "cuda:1"),  # the second of a multi-GPU instance's workers
        (True, _Context("0"), "cuda:0"),
        (True, _Context(None), "cuda"),
        (True, None, "cuda"),
    ],
)
def test_each_worker_serves_on_the_gpu_torchserve_assigned_it(monkeypatch, cuda, context, expected):
    monkeypatch.setattr(handlers.torch.cuda, "is_available", lambda: cuda)
    assert handlers.serving_device(context) == handlers.torch.device(expected)


def test_concurrent_predictions_equal_sequential_ones(model):
    bodies = [images.jpeg(64 + 8 * i, 64) for i in range(6)]
    sequential = [serve(model, body, "image/jpeg") for body in bodies]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda body: serve(model, body, "image/jpeg"), bodies * 2))
    assert concurrent == sequential * 2


def test_model_fn_loads_on_cpu_in_fp32_and_is_warm(model):
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(model.network.parameters()).dtype == model.dtype
    assert not model.network.training
    assert len(model.version) == 12


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_are_loaded_without_running_pickled_code(artifact_dir, tmp_path):
    """A model.pt that would run code when unpickled is refused, and the code never runs."""
    poisoned = tmp_path / "model"
    poisoned.mkdir()
    (poisoned / "model_config.json").write_text((artifact_dir / "model_config.json").read_text())
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = str(marker)
    torch.save({"fc.weight": exploit}, poisoned / "model.pt")
    with pytest.raises(RuntimeError, match=r"model\.pt does not load as this model's state_dict") as raised:
        handlers.model_fn(str(poisoned))
    assert isinstance(raised.value.__cause__, pickle.UnpicklingError)  # torch's weights-only refusal
    assert not marker.exists()


def test_the_artifact_code_dir_serves_on_its_own(artifact_dir, tmp_path):
    """As in the container: code/ on sys.path, modules top-level, no repo on the path."""
    image = tmp_path / "dog.jpg"
    image.write_bytes(images.jpeg())
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(artifact_dir / "code")!r})
        import inference
        assert inference.__file__.startswith({str(artifact_dir)!r}), inference.__file__
        model = inference.model_fn({str(artifact_dir)!r})
        request = inference.input_fn(open({str(image)!r}, "rb").read(), "image/jpeg")
        print(inference.output_fn(inference.predict_fn(request, model), "application/json")[0])
        """
    )
    result = subprocess.run(  # noqa: S603 - this interpreter with a fixed script, no shell
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(json.loads(result.stdout)["predictions"]) == 5


def test_a_truly_unreadable_image_body_type_is_a_client_error(model):
    with pytest.raises(handlers.RequestError) as raised:
        handlers.input_fn("a str body", "image/jpeg")
    assert raised.value.status_code == 400


def test_rgb_image_is_what_the_transform_receives():
    image = decode_image(images.png_rgba())
    assert isinstance(image, Image.Image) and image.mode == "RGB"


def test_jpeg_draft_decoding_feeds_the_model_what_a_full_decode_would(model):
    """The endpoint decodes big JPEGs at 1/2..1/8 scale (draft mode); the preset's output must not change."""
    data = images.large_jpeg()
    drafted = decode_image(data, min_side=model.config.resize_size)
    full = decode_image(data)
    assert full.size == (4000, 3000) and drafted.size[0] < 1000  # the draft really happened
    assert min(drafted.size) >= model.config.resize_size
    difference = (model.transform(drafted) - model.transform(full)).abs().mean()
    assert difference < 0.05


def test_counting_scans_stops_at_the_limit_whatever_the_body_holds():
    body = images.progressive_jpeg() + b"\xff\xda" * 1_000_000  # 2 MB of start-of-scan markers
    tracemalloc.start()
    try:
        with pytest.raises(ImageDecodeError, match="scans"):
            decode_image(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # a list of every match would be ~40 MB
