"""Small constructs, each owning one thing; stacks wire them together."""
