"""Training side of the dog-breed classifier: one DDP script for a laptop, EC2 hosts and SageMaker.

Modules: ``config`` (every environment variable and CLI flag), ``data``, ``model``, ``distributed``,
``checkpoint``, ``metrics``, ``artifact``, ``train`` (the entry point), ``synthetic`` and ``launch``.
"""
