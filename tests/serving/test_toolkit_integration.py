"""The artifact's code/inference.py driven by the real sagemaker-inference Transformer, as in the DLC.

The PyTorch inference container runs TorchServe, whose handler service hands every request to
``sagemaker_inference.transformer.Transformer.transform(data, context)``. This test runs that exact
class (the sagemaker_inference copy inside sagemaker-pytorch-inference 2.0.25, as in the DLC; pinned in
requirements-serving.txt) in a fresh interpreter with only the
artifact's ``code/`` on the path, and a stand-in for TorchServe's ``Context`` (the attributes the
toolkit touches). It shows that the custom-attributes header reaches ``input_fn`` through the
context, per request, and that bad requests become the intended status codes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import sample_images as images

DRIVER = textwrap.dedent(
    """
    import base64, json, sys
    code_dir, model_dir, cases = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
    sys.path.insert(0, code_dir)
    from sagemaker_inference.default_handler_service import DefaultHandlerService

    class RequestProcessor:  # ts.protocol: one per request in the batch
        def __init__(self):
            self.headers = {}
        def get_request_properties(self):
            return self.headers

    class Context:  # ts.context.Context: TorchServe reuses one object and refreshes its requests
        model_name = "model"
        def __init__(self):
            self.system_properties = {"model_dir": model_dir, "gpu_id": None}
            self.request_processor = [RequestProcessor()]
            self.status, self.content_type = 200, None
        def set_response_content_type(self, idx, value):
            self.content_type = value
        def set_response_status(self, code=200, phrase="", idx=0):
            self.status = code

    service, context = DefaultHandlerService(), Context()
    service.initialize(context)
    for headers, body in cases:
        context.request_processor[0].headers = headers
        context.status, context.content_type = 200, None
        [answer] = service.handle([{"body": base64.b64decode(body)}], context)
        answer = answer.decode() if isinstance(answer, bytes) else answer
        print(json.dumps({"status": context.status, "content_type": context.content_type, "body": answer}))
    """
)


def run_toolkit(artifact_dir, cases):
    import base64

    payload = json.dumps([[headers, base64.b64encode(body).decode()] for headers, body in cases])
    result = subprocess.run(  # noqa: S603 - this interpreter with a fixed script, no shell
        [sys.executable, "-I", "-c", DRIVER, str(artifact_dir / "code"), str(artifact_dir)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=artifact_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_real_toolkit_passes_custom_attributes_per_request_and_maps_errors(artifact_dir, class_names):
    cases = [
        ({"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=2"}, images.jpeg()),
        ({"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": "top_k=4"}, images.png_rgba()),
        ({"Content-Type": "image/webp", "Accept": "application/json"}, images.webp()),
        ({"Content-Type": "image/gif"}, images.gif()),
        ({"Content-Type": "image/jpeg"}, images.truncated_jpeg()),
        ({"Content-Type": "image/png"}, images.png_bomb()),
        ({"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=zero"}, images.jpeg()),
    ]
    answers = run_toolkit(artifact_dir, cases)
    assert len(answers) == len(cases)

    for answer, expected_k in zip(answers[:3], [2, 4, 5], strict=True):
        assert answer["status"] == 200 and answer["content_type"] == "application/json"
        predictions = json.loads(answer["body"])["predictions"]
        assert len(predictions) == expected_k
        assert all(class_names[p["index"]] == p["breed"] for p in predictions)

    for answer, (status, code) in zip(
        answers[3:],
        [
            (415, "unsupported_media_type"),
            (400, "invalid_image"),
            (413, "image_too_large"),
            (400, "invalid_top_k"),
        ],
        strict=True,
    ):
        assert answer["status"] == status
        first_line, trace = answer["body"].split("\n", 1)
        assert json.loads(first_line)["error"]["code"] == code
        assert "Traceback" in trace  # the toolkit appends it: why the Lambda never echoes model text
