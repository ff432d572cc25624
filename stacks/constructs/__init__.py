"""Every CDK construct of the app, one module per concern; the stack modules (``stacks/*.py``) only compose.

A stack builds its constructs' props from the ``StageConfig``; a leaf construct takes narrow typed props
(a frozen ``*Props`` dataclass, or keyword arguments) holding just the values it uses, never the whole
config, so each module shows which config keys shape its resources. Where a resource moved into a
construct after it was deployed, it keeps the logical id it was deployed under (docstrings say how), so
moving code never replaces a resource.
"""
