"""The Python toolchain below export: core (shared by every stage) <- data, model <- loop, evaluation.

docs/architecture.md draws the tree and the import rule; tests/test_architecture.py enforces it."""
