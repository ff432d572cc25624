"""Infrastructure tests: config validation, template assertions, the nag gate, cfn-lint, snapshots."""
