"""What the SageMaker PyTorch container does with the handler functions, for the local endpoint.

TorchServe hands each request to ``sagemaker_inference.transformer.Transformer.transform``, which
calls ``input_fn -> predict_fn -> output_fn`` with the TorchServe context as a trailing argument,
turns a ``BaseInferenceToolkitError`` into that status code and anything else into a 500, and sends
``message + "\n" + traceback`` as the body of an error. :class:`ToolkitEmulation` does the same in
process, so the local endpoint answers exactly what the container would.
"""

from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace

from inference import inference as default_handlers

ERROR_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ContainerResponse:
    status: int
    body: bytes
    content_type: str


class _RequestProperties:
    """TorchServe's per-request processor: the request headers, as the toolkit reads them."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers

    def get_request_property(self, key: str) -> str | None:
        return self._headers.get(key)


class ToolkitEmulation:
    """What TorchServe + sagemaker-inference do with the handler functions, for one model.

    Mirrors ``sagemaker_inference.transformer.Transformer.transform``: a
    ``BaseInferenceToolkitError`` sets the response status, anything else is a 500, and the body
    of an error is the message followed by the traceback (which is why callers must never echo it).
    """

    def __init__(self, model_dir: str, handlers: ModuleType | SimpleNamespace = default_handlers) -> None:
        self.handlers = handlers
        self.model = handlers.model_fn(model_dir)

    def ping(self) -> int:
        """Healthy once constructed: ``model_fn`` ran in ``__init__``."""
        return 200

    def stop(self) -> None:
        """Nothing to stop: the handlers live in this process."""

    def invoke(self, body: bytes, headers: dict[str, str], timeout: float | None = None) -> ContainerResponse:
        """Run the handlers; ``timeout`` is the servers' shared signature (an in-process call runs on)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        content_type = lowered.get("content-type", "")
        accept = lowered.get("accept") or "application/json"
        if accept == "*/*":
            accept = "application/json"
        request_id = str(uuid.uuid4())
        context = SimpleNamespace(
            request_processor=[_RequestProperties(dict(headers))],
            get_request_id=lambda idx=0: request_id,
        )
        handlers = self.handlers
        try:
            data = handlers.input_fn(body, content_type, context)
            prediction = handlers.predict_fn(data, self.model, context)
            result = handlers.output_fn(prediction, accept, context)
            payload, response_type = result if isinstance(result, tuple) else (result, accept)
            if isinstance(payload, str):
                payload = payload.encode()
            return ContainerResponse(200, bytes(payload), response_type)
        except default_handlers.ToolkitError as exc:
            return self._error(exc.status_code, str(exc.message))
        except Exception as exc:
            return self._error(500, str(exc))

    @staticmethod
    def _error(status: int, message: str) -> ContainerResponse:
        # TorchServe sends the toolkit's error text without a content type of its own.
        text = f"{message}\n{traceback.format_exc()}"
        return ContainerResponse(status, text.encode(), ERROR_CONTENT_TYPE)
