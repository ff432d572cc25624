"""The dog-breed classifier's CDK stacks: storage, training, serving, api (one module per concern)."""
