"""What runs at inference time, on onnxruntime and numpy alone (no torch): the predictor behind `cxr predict`, the
REST API and the release scoring; the uncertainty band; one way to open a session; validating a model on a
site's labelled films and the site profile that calibrates it (docs/site.md). It imports `core` and nothing
else of the project (tests/test_architecture.py)."""
