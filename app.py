#!/usr/bin/env python3
"""CDK entry point: load the stage config, add the stage's stacks and the security gate, synthesize."""

import os
import sys

# jsii prints a banner for Node versions past their end of life; the pinned toolchain is tested on Node 20.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App

from stacks.config import ConfigError, load_stage_config
from stacks.deployment import add_security_gate, add_stage


def main() -> int:
    app = App()
    try:
        config = load_stage_config(app.node.try_get_context)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 1
    add_stage(app, config)
    add_security_gate(app)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
