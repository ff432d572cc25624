"""The project on your machine: everything that stands in for AWS around the code that ships.

Nothing here is deployed. ``inference/`` is exactly what runs inside the endpoint container (the
artifact's ``code/``); ``lambda/`` is exactly the prediction function's bundle. This package runs them
locally: the DLC's serving stack (``torchserve_container``, ``java_runtime``) or the toolkit's
behaviour in-process (``toolkit_emulation``) behind the SageMaker runtime HTTP API (``local_endpoint``),
an artifact's serve check before deploy (``check_artifact``), one image through the Lambda handler
(``local_invoke``), and the web page with what CloudFront and the Function URL do around the handler
(``serve``, ``function_url``).
"""
